// partners.js — the Technology Partners page: each partner with the REST
// endpoint to give it (copy button), its data import keys (masked, with
// ids and creation times), "Generate key" (the full key is shown once,
// with a copy button) and invalidation behind a confirmation dialog.

import { api, seg } from './api.js';
import { h, clear, table, time, copyButton, errorBox, showError, pageTitle, partnerName, toast } from './dom.js';
import { confirmDialog } from './dialog.js';

export async function render(main) {
  const error = errorBox();
  const list = h('div', { class: 'partners' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(
    pageTitle('Technology Partners'),
    h('p', { class: 'lead' }, 'Give a partner this server’s REST endpoint and a data import key (its client secret). Older keys stay live until you invalidate them, so keys rotate without downtime.'),
    error,
    list,
  );
  try {
    const data = await api('GET', '/technology_partners');
    clear(list);
    for (const p of data.technology_partners) list.append(partnerCard(p));
  } catch (e) {
    clear(list);
    showError(error, e);
  }
}

function partnerCard(p) {
  const name = partnerName(p.partner);
  const error = errorBox();
  const keys = h('div', {});
  const fresh = h('div', {});
  const headingId = `partner-${p.partner}`;
  const generate = h('button', { type: 'button', class: 'button', 'aria-describedby': headingId }, 'Generate key');
  const card = h(
    'section',
    { class: 'card', 'aria-labelledby': headingId, dataset: { partner: p.partner } },
    h('div', { class: 'card-head' }, h('h2', { id: headingId }, name), generate),
    h('p', { class: 'small' }, 'REST endpoint: ', h('code', { class: 'endpoint' }, p.rest_endpoint), ' ', copyButton(p.rest_endpoint, `${name} REST endpoint`)),
    fresh,
    error,
    keys,
  );

  function showKeys(list) {
    clear(keys);
    if (list.length === 0) {
      keys.append(h('p', { class: 'muted small' }, 'No data import keys yet.'));
      return;
    }
    keys.append(
      table(
        [
          { label: 'Key id', cell: (k) => h('code', {}, k.key_id) },
          { label: 'Key', cell: (k) => h('code', {}, k.masked_key) },
          { label: 'Created', cell: (k) => time(k.created_at) },
          {
            label: 'Actions',
            cell: (k) =>
              h('button', { type: 'button', class: 'button secondary small', 'aria-label': `Invalidate key ${k.key_id}`, onclick: () => invalidate(k) }, 'Invalidate'),
          },
        ],
        list,
        { caption: `${name} data import keys`, dataset: { keys: p.partner } },
      ),
    );
  }

  async function reload() {
    const data = await api('GET', '/technology_partners');
    const mine = data.technology_partners.find((x) => x.partner === p.partner);
    showKeys(mine ? mine.data_import_keys : []);
  }

  async function invalidate(k) {
    const done = await confirmDialog({
      title: `Invalidate key ${k.key_id}?`,
      body: h(
        'p',
        {},
        `${name} requests sent with the key ${k.masked_key} will get `,
        h('code', {}, '401 Invalid client secret'),
        ' from now on. This cannot be undone.',
      ),
      confirmLabel: 'Invalidate key',
      danger: true,
      onConfirm: () => api('DELETE', `/technology_partners/${seg(p.partner)}/data_import_keys/${seg(k.key_id)}`),
    });
    if (!done) return;
    toast(`Key ${k.key_id} invalidated`);
    try {
      await reload();
      generate.focus();
    } catch (e) {
      showError(error, e);
    }
  }

  generate.addEventListener('click', async () => {
    showError(error, null);
    generate.disabled = true;
    try {
      const k = await api('POST', `/technology_partners/${seg(p.partner)}/data_import_keys`);
      const value = h('code', { class: 'new-key', dataset: { newKey: p.partner, keyId: k.key_id } }, k.data_import_key);
      const copy = copyButton(k.data_import_key, `new ${name} data import key`, value);
      const dismiss = h('button', { type: 'button', class: 'button secondary small' }, 'Done');
      const box = h(
        'div',
        { class: 'once', role: 'status' },
        h('strong', {}, `New ${name} data import key `),
        h('span', { class: 'muted small' }, `(${k.key_id})`),
        h('p', { class: 'small' }, 'This is the only time the full key is shown. Copy it now and give it to the partner as its client secret.'),
        value,
        copy,
        ' ',
        dismiss,
      );
      dismiss.addEventListener('click', () => {
        box.remove();
        generate.focus();
      });
      clear(fresh).append(box);
      await reload();
      copy.focus();
    } catch (e) {
      showError(error, e);
    } finally {
      generate.disabled = false;
    }
  });

  showKeys(p.data_import_keys);
  return card;
}

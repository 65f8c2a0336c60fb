// lookup.js — the user lookup: one user by external_id, user alias (name
// and label) or device_id; its cohorts and saved segments from
// `POST /users/memberships`, and its attributes, custom events and
// purchases from `POST /users/export/ids` (Braze's export shape). Fields
// that are absent are simply not shown; each half reports its own error.

import { api } from './api.js';
import { h, clear, table, time, num, errorBox, showError, pageTitle, partnerName, field, select } from './dom.js';
import { cohortHref } from './cohorts.js';

const KINDS = [
  ['external_id', 'External id'],
  ['user_alias', 'User alias'],
  ['device_id', 'Device id'],
];

/** Identifiers, shown as code. */
const IDS = new Set(['braze_id', 'external_id']);

/** Fields of an exported user shown elsewhere than in "Profile". */
const NOT_PROFILE = new Set(['custom_attributes', 'custom_events', 'purchases', 'user_aliases', 'devices', 'device_ids']);

export function render(main, _params, query) {
  const kind = select(KINDS, 'external_id', { name: 'kind' });
  const externalId = h('input', { type: 'text', name: 'external_id', autocomplete: 'off', spellcheck: 'false' });
  const aliasName = h('input', { type: 'text', name: 'alias_name', autocomplete: 'off', spellcheck: 'false' });
  const aliasLabel = h('input', { type: 'text', name: 'alias_label', autocomplete: 'off', spellcheck: 'false' });
  const deviceId = h('input', { type: 'text', name: 'device_id', autocomplete: 'off', spellcheck: 'false' });
  const groups = {
    external_id: h('div', { class: 'inline-form' }, field('External id', externalId)),
    user_alias: h('div', { class: 'inline-form' }, field('Alias name', aliasName), field('Alias label', aliasLabel)),
    device_id: h('div', { class: 'inline-form' }, field('Device id', deviceId)),
  };
  const showKind = () => {
    for (const [k, g] of Object.entries(groups)) g.hidden = k !== kind.value;
  };
  kind.addEventListener('change', showKind);
  const formError = errorBox();
  const results = h('div', { id: 'lookup-results' });
  const form = h(
    'form',
    { class: 'card', method: 'post', novalidate: true },
    h('div', { class: 'inline-form' }, field('Look up by', kind), groups.external_id, groups.user_alias, groups.device_id, h('div', { class: 'field' }, h('button', { type: 'submit', class: 'button' }, 'Look up'))),
    formError,
  );
  main.append(
    pageTitle('User lookup'),
    h('p', { class: 'lead' }, 'Find one profile: the cohorts and saved segments it is in, its attributes and its events.'),
    form,
    results,
  );

  function member() {
    switch (kind.value) {
      case 'user_alias': {
        const alias_name = aliasName.value.trim();
        const alias_label = aliasLabel.value.trim();
        if (!alias_name || !alias_label) throw new Error('Enter both the alias name and its label.');
        return { membership: { user_alias: { alias_name, alias_label } }, exported: { user_aliases: [{ alias_name, alias_label }] }, text: `alias ${alias_name} (${alias_label})` };
      }
      case 'device_id': {
        const d = deviceId.value.trim();
        if (!d) throw new Error('Enter a device id.');
        return { membership: { device_id: d }, exported: { device_id: d }, text: `device ${d}` };
      }
      default: {
        const e = externalId.value.trim();
        if (!e) throw new Error('Enter an external id.');
        return { membership: { external_id: e }, exported: { external_ids: [e] }, text: e };
      }
    }
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(formError, null);
    let who;
    try {
      who = member();
    } catch (e) {
      showError(formError, e);
      return;
    }
    clear(results).append(h('p', { class: 'muted' }, 'Looking up…'));
    const [memberships, exported] = await Promise.allSettled([
      api('POST', '/users/memberships', who.membership),
      api('POST', '/users/export/ids', who.exported),
    ]);
    clear(results).append(
      h('h2', { id: 'lookup-title' }, `User ${who.text}`),
      renderMemberships(memberships),
      renderExport(exported),
    );
  });

  // A lookup linked from elsewhere (#/users?external_id=u1) runs at once.
  if (query.has('alias_name')) {
    kind.value = 'user_alias';
    aliasName.value = query.get('alias_name');
    aliasLabel.value = query.get('alias_label') || '';
  } else if (query.has('device_id')) {
    kind.value = 'device_id';
    deviceId.value = query.get('device_id');
  } else if (query.has('external_id')) {
    externalId.value = query.get('external_id');
  }
  showKind();
  if (query.has('alias_name') || query.has('device_id') || query.has('external_id')) form.requestSubmit();
}

function section(titleText, ...content) {
  const id = `lookup-${titleText.toLowerCase().replace(/[^a-z]+/g, '-')}`;
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, titleText), ...content);
}

function renderMemberships(settled) {
  if (settled.status === 'rejected') {
    const box = errorBox();
    showError(box, settled.reason);
    return section('Cohorts and segments', box);
  }
  const m = settled.value;
  return h(
    'div',
    { class: 'grid-2' },
    section(
      'Cohorts',
      m.cohorts.length
        ? h('ul', { class: 'plain', dataset: { userCohorts: '' } }, m.cohorts.map((c) =>
            h('li', {}, h('a', { href: cohortHref(c) }, c.name), h('span', { class: 'muted small' }, ` · ${partnerName(c.partner)} · ${c.cohort_id}`))))
        : h('p', { class: 'muted' }, 'In no cohort.'),
    ),
    section(
      'Segments',
      m.segments.length
        ? h('ul', { class: 'plain', dataset: { userSegments: '' } }, m.segments.map((s) =>
            h('li', {}, h('a', { href: `#/segments/${encodeURIComponent(s.segment_id)}` }, s.name), h('span', { class: 'muted small' }, ` · ${s.segment_id}`))))
        : h('p', { class: 'muted' }, 'In no saved segment.'),
    ),
  );
}

function value(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, '—');
  if (typeof v === 'object') return h('code', {}, JSON.stringify(v));
  if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return time(v);
  return String(v);
}

function eventsTable(list, caption, dataset) {
  return table(
    [
      { label: 'Name', cell: (e) => e.name },
      { label: 'Count', cell: (e) => num(e.count), num: true },
      { label: 'First', cell: (e) => time(e.first) },
      { label: 'Last', cell: (e) => time(e.last) },
    ],
    list,
    { caption, dataset },
  );
}

function renderExport(settled) {
  if (settled.status === 'rejected') {
    const box = errorBox();
    showError(box, new Error(`Attributes and events could not be read: ${settled.reason.message}`));
    return section('Profile', box);
  }
  const users = settled.value.users || [];
  const u = users[0];
  if (!u) return section('Profile', h('p', { class: 'muted' }, 'No profile found for that identifier.'));
  const facts = Object.entries(u).filter(([k]) => !NOT_PROFILE.has(k));
  const aliases = u.user_aliases || [];
  const devices = [
    ...(u.devices || []).map((d) => (typeof d === 'object' && d ? d.device_id : d)),
    ...(u.device_ids || []),
  ].filter((d) => typeof d === 'string');
  const custom = Object.entries(u.custom_attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const events = u.custom_events || [];
  const purchases = u.purchases || [];
  return h(
    'div',
    {},
    section(
      'Profile',
      h('dl', { class: 'facts', dataset: { profile: '' } }, facts.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, IDS.has(k) && typeof v === 'string' ? h('code', {}, v) : value(v))))),
      aliases.length ? h('h3', {}, 'Aliases') : null,
      aliases.length ? h('ul', { class: 'plain' }, aliases.map((a) => h('li', {}, `${a.alias_name} (${a.alias_label})`))) : null,
      devices.length ? h('h3', {}, 'Devices') : null,
      devices.length ? h('ul', { class: 'plain' }, devices.map((d) => h('li', {}, h('code', {}, d)))) : null,
    ),
    section(
      'Custom attributes',
      custom.length
        ? table([{ label: 'Attribute', cell: ([k]) => h('code', {}, k) }, { label: 'Value', cell: ([, v]) => value(v), wrap: true }], custom, {
            caption: `${custom.length} custom attribute${custom.length === 1 ? '' : 's'}`,
            dataset: { customAttributes: '' },
          })
        : h('p', { class: 'muted' }, 'No custom attributes.'),
    ),
    section(
      'Events',
      events.length ? eventsTable(events, 'Custom events', { customEvents: '' }) : h('p', { class: 'muted' }, 'No custom events.'),
      purchases.length ? eventsTable(purchases, 'Purchases', { purchases: '' }) : h('p', { class: 'muted' }, 'No purchases.'),
    ),
  );
}

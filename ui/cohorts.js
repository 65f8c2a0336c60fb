// cohorts.js — the Cohorts pages: the workspace's partner cohorts as a
// table (paged with "Load more"), and one cohort's page: its figures, the
// history chart (chart.js), the import history table and a sample of
// its members (each a link to the user lookup).

import { api, seg } from './api.js';
import { h, clear, table, time, num, errorBox, showError, pageTitle, partnerName, memberItem } from './dom.js';
import { historyChart } from './chart.js';

const PAGE = 100;
const IMPORTS = 200;
const SAMPLE = 20;

export function cohortHref(c) {
  return `#/cohorts/${seg(c.partner)}/${seg(c.cohort_id)}`;
}

export async function renderList(main) {
  const error = errorBox();
  const holder = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const more = h('button', { type: 'button', class: 'button secondary', hidden: true }, 'Load more');
  main.append(
    pageTitle('Cohorts'),
    h('p', { class: 'lead' }, 'Partner cohorts in this workspace, as partners named and filled them through the cohort import API.'),
    error,
    holder,
    h('div', { class: 'actions' }, more),
  );
  const rows = [];
  let cursor = null;
  async function load() {
    const url = `/cohorts?limit=${PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const page = await api('GET', url);
    rows.push(...page.cohorts);
    cursor = page.next_cursor || null;
    clear(holder);
    if (rows.length === 0) {
      holder.append(
        h('p', { class: 'notice' }, 'No cohorts yet. A cohort appears when a partner names it or sends its first delta with a data import key from ', h('a', { href: '#/partners' }, 'Technology Partners'), '.'),
      );
    } else {
      holder.append(
        table(
          [
            { label: 'Partner', cell: (c) => partnerName(c.partner) },
            { label: 'Name', cell: (c) => h('a', { href: cohortHref(c) }, c.name), wrap: true },
            { label: 'Cohort id', cell: (c) => h('code', {}, c.cohort_id) },
            { label: 'Size', cell: (c) => num(c.size), num: true },
            { label: 'Created', cell: (c) => time(c.created_at) },
            { label: 'Updated', cell: (c) => time(c.updated_at) },
          ],
          rows,
          { caption: `${rows.length} cohort${rows.length === 1 ? '' : 's'}${cursor ? ' (more to load)' : ''}`, dataset: { cohorts: '' } },
        ),
      );
    }
    more.hidden = !cursor;
  }
  more.addEventListener('click', async () => {
    more.disabled = true;
    try {
      await load();
    } catch (e) {
      showError(error, e);
    } finally {
      more.disabled = false;
    }
  });
  try {
    await load();
  } catch (e) {
    clear(holder);
    showError(error, e);
  }
}

/**
 * The history chart in a box that draws it again when its width changes
 * by more than a few pixels (a window resized, a phone turned), so its
 * text stays legible at any width; the observer ends with the page.
 */
function chartBox(history, width) {
  const box = h('div', { class: 'chart-box' }, historyChart(history, width));
  let drawnAt = Math.round(width);
  const observer = new ResizeObserver(() => {
    if (!box.isConnected) {
      observer.disconnect();
      return;
    }
    const now = box.clientWidth;
    if (now > 0 && Math.abs(now - drawnAt) > 24) {
      drawnAt = now;
      box.replaceChildren(historyChart(history, now));
    }
  });
  observer.observe(box);
  return box;
}

export async function renderOne(main, [partner, cohortId]) {
  const base = `/cohorts/${seg(partner)}/${seg(cohortId)}`;
  const title = pageTitle(cohortId);
  const error = errorBox();
  const body = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const refresh = h('button', { type: 'button', class: 'button secondary' }, 'Refresh');
  main.append(
    h('p', { class: 'small' }, h('a', { href: '#/cohorts' }, '← All cohorts')),
    h('div', { class: 'card-head' }, title, refresh),
    error,
    body,
  );

  async function load() {
    const [c, imports, members] = await Promise.all([
      api('GET', base),
      api('GET', `${base}/imports?limit=${IMPORTS}`),
      api('GET', `${base}/members?limit=${SAMPLE}`),
    ]);
    title.textContent = c.name;
    document.title = `${c.name} · cohortd`;
    const history = imports.imports;
    clear(body).append(
      h(
        'section',
        { class: 'card', 'aria-label': 'Cohort' },
        h(
          'dl',
          { class: 'facts' },
          fact('Partner', `${partnerName(c.partner)} Cohorts`),
          fact('Cohort id', h('code', {}, c.cohort_id)),
          fact('Size', h('span', { dataset: { cohortSize: '' } }, num(c.size))),
          fact('Created', time(c.created_at)),
          fact('Updated', time(c.updated_at)),
        ),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'history-chart' },
        h('h2', { id: 'history-chart' }, 'Size over time'),
        history.length
          ? chartBox(history, body.clientWidth - 48)
          : h('p', { class: 'muted' }, 'No imports yet: a delta with at least one identifier adds an entry.'),
        history.length >= IMPORTS ? h('p', { class: 'hint' }, `The last ${IMPORTS} imports.`) : null,
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'history-table' },
        h('h2', { id: 'history-table' }, 'Import history'),
        history.length
          ? table(
              [
                { label: 'Time', cell: (r) => time(r.at) },
                { label: 'Added', cell: (r) => num(r.added), num: true },
                { label: 'Removed', cell: (r) => num(r.removed), num: true },
                { label: 'Unmatched', cell: (r) => num(r.unmatched), num: true },
                { label: 'Size after', cell: (r) => num(r.size), num: true },
              ],
              history,
              { caption: 'Newest first', dataset: { imports: '' } },
            )
          : h('p', { class: 'muted' }, 'No imports yet.'),
      ),
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'members-sample' },
        h('h2', { id: 'members-sample' }, `Members (first ${SAMPLE})`),
        members.members.length
          ? h('ul', { class: 'plain', dataset: { members: '' } }, members.members.map(memberItem))
          : h('p', { class: 'muted' }, 'No members.'),
        members.next_cursor ? h('p', { class: 'hint' }, `… and ${num(c.size - members.members.length)} more.`) : null,
      ),
    );
  }

  refresh.addEventListener('click', async () => {
    showError(error, null);
    try {
      await load();
    } catch (e) {
      showError(error, e);
    }
  });
  try {
    await load();
  } catch (e) {
    clear(body);
    showError(error, e);
  }
}

function fact(label, value) {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}

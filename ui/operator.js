// operator.js — the operator pages (admin token): workspaces (list, and
// create one: its REST API key is shown once), snapshots (take one; restore
// one behind a typed confirmation: the operator types the snapshot id),
// and health (/healthz, /readyz, and a handful of figures parsed from the
// Prometheus text of /metrics; names from src/metrics.rs).

import { api } from './api.js';
import { h, clear, table, time, num, errorBox, showError, pageTitle, field, copyButton, toast, fmtTime } from './dom.js';
import { confirmDialog } from './dialog.js';

// ---- workspaces ----

export async function renderWorkspaces(main) {
  const error = errorBox();
  const listBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const name = h('input', { type: 'text', name: 'workspace-name', autocomplete: 'off', required: true });
  const createError = errorBox();
  const created = h('div', {});
  const form = h(
    'form',
    { class: 'card', method: 'post', novalidate: true, 'aria-labelledby': 'new-ws' },
    h('h2', { id: 'new-ws' }, 'New workspace'),
    h('div', { class: 'inline-form' }, field('Workspace name', name), h('div', { class: 'field' }, h('button', { type: 'submit', class: 'button' }, 'Create workspace'))),
    createError,
    created,
  );
  main.append(
    pageTitle('Workspaces'),
    h('p', { class: 'lead' }, 'Each workspace is one customer’s isolated space, with its own REST API key.'),
    form,
    error,
    h('section', { class: 'card', 'aria-labelledby': 'ws-list' }, h('h2', { id: 'ws-list' }, 'All workspaces'), listBox),
  );

  async function load() {
    const data = await api('GET', '/admin/workspaces');
    clear(listBox);
    const rows = data.workspaces;
    listBox.append(
      rows.length
        ? table(
            [
              { label: 'Name', cell: (w) => w.name, wrap: true },
              { label: 'Workspace id', cell: (w) => h('code', {}, w.workspace_id) },
              { label: 'Created', cell: (w) => time(w.created_at) },
              { label: 'Profiles', cell: (w) => num(w.profiles), num: true },
              { label: 'Cohorts', cell: (w) => num(w.cohorts), num: true },
            ],
            rows,
            { caption: `${rows.length} workspace${rows.length === 1 ? '' : 's'}`, dataset: { workspaces: '' } },
          )
        : h('p', { class: 'muted' }, 'No workspaces yet.'),
    );
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(createError, null);
    const n = name.value.trim();
    if (!n) {
      showError(createError, new Error('Give the workspace a name.'));
      name.focus();
      return;
    }
    try {
      const w = await api('POST', '/admin/workspaces', { name: n });
      name.value = '';
      const key = h('code', { dataset: { newRestKey: '' } }, w.rest_api_key);
      const copy = copyButton(w.rest_api_key, `REST API key of ${n}`, key);
      clear(created).append(
        h(
          'div',
          { class: 'once', role: 'status' },
          h('strong', {}, `Workspace “${n}” created `),
          h('span', { class: 'muted small' }, `(${w.workspace_id})`),
          h('p', { class: 'small' }, 'Its REST API key is shown only this once. Copy it now.'),
          key,
          copy,
        ),
      );
      copy.focus();
      await load();
    } catch (err) {
      showError(createError, err);
    }
  });

  try {
    await load();
  } catch (e) {
    clear(listBox);
    showError(error, e);
  }
}

// ---- snapshots ----

export async function renderSnapshots(main) {
  const error = errorBox();
  const result = h('div', { id: 'snapshot-result' });
  const listBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const take = h('button', { type: 'button', class: 'button' }, 'Take snapshot now');
  main.append(
    h('div', { class: 'card-head' }, pageTitle('Snapshots'), take),
    h('p', { class: 'lead' }, 'A snapshot is a durable, point-in-time image of every workspace. Restoring one replaces the live state of the whole server with it.'),
    error,
    result,
    h('section', { class: 'card', 'aria-labelledby': 'snap-list' }, h('h2', { id: 'snap-list' }, 'Snapshots (newest first)'), listBox),
  );

  async function load() {
    const data = await api('GET', '/admin/snapshots');
    clear(listBox);
    const rows = data.snapshots;
    listBox.append(
      rows.length
        ? table(
            [
              { label: 'Snapshot id', cell: (s) => h('code', {}, s.snapshot_id) },
              { label: 'Created', cell: (s) => time(s.created_at) },
              { label: 'Size', cell: (s) => bytes(s.bytes), num: true },
              { label: 'Log position', cell: (s) => num(s.log_position), num: true },
              {
                label: 'Actions',
                cell: (s) =>
                  h('button', { type: 'button', class: 'button secondary small', 'aria-label': `Restore snapshot ${s.snapshot_id}`, onclick: () => restore(s) }, 'Restore…'),
              },
            ],
            rows,
            { caption: `${rows.length} snapshot${rows.length === 1 ? '' : 's'} kept`, dataset: { snapshots: '' } },
          )
        : h('p', { class: 'muted' }, 'No snapshots yet.'),
    );
  }

  async function restore(s) {
    const answer = await confirmDialog({
      title: 'Restore this snapshot?',
      body: [
        h('p', {}, 'Every workspace’s live state will be replaced by snapshot ', h('code', {}, s.snapshot_id), ` taken ${fmtTime(new Date(s.created_at))}.`),
        h('p', {}, h('strong', {}, 'Everything written after it is lost.'), ' Requests arriving meanwhile wait or get 503.'),
      ],
      typed: s.snapshot_id,
      typedLabel: `Type the snapshot id (${s.snapshot_id}) to confirm`,
      confirmLabel: 'Restore snapshot',
      danger: true,
      onConfirm: () => api('POST', '/admin/restore', { snapshot_id: s.snapshot_id }),
    });
    if (!answer) return;
    clear(result).append(
      h('p', { class: 'notice', role: 'status', dataset: { restored: answer.restored } }, `Restored snapshot ${answer.restored}. The new starting point is snapshot ${answer.snapshot?.snapshot_id ?? '?'}.`),
    );
    toast('Snapshot restored');
    await load().catch((e) => showError(error, e));
  }

  take.addEventListener('click', async () => {
    showError(error, null);
    take.disabled = true;
    try {
      const s = await api('POST', '/admin/snapshots');
      clear(result).append(
        h('p', { class: 'notice', role: 'status', dataset: { taken: s.snapshot_id } }, `Snapshot ${s.snapshot_id} taken (${bytes(s.bytes)}, log position ${num(s.log_position)}).`),
      );
      await load();
    } catch (e) {
      showError(error, e);
    } finally {
      take.disabled = false;
    }
  });

  try {
    await load();
  } catch (e) {
    clear(listBox);
    showError(error, e);
  }
}

function bytes(n) {
  if (typeof n !== 'number') return '—';
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u += 1;
  } while (v >= 1024 && u < units.length - 1);
  return `${v.toFixed(1)} ${units[u]}`;
}

// ---- health ----

/** Prometheus/OpenMetrics text → [{name, labels, value}] (samples only). */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, name, where = () => true) =>
  samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);
const max = (samples, name) => samples.filter((s) => s.name === name).reduce((a, s) => Math.max(a, s.value), 0);
const count = (samples, name) => samples.filter((s) => s.name === name).length;

/** The figures the health page shows: [label, value, hint]. */
export function keyFigures(samples) {
  const req = 'cohortd_http_requests_total';
  const deltas = (l) => l.route === '/partners/{partner}/cohorts/users' && l.status.startsWith('2');
  return [
    ['Requests', sum(samples, req), 'since start'],
    ['Server errors (5xx)', sum(samples, req, (l) => l.status.startsWith('5')), 'since start'],
    ['Cohort deltas applied', sum(samples, req, deltas), 'partner user cohort calls answered 2xx'],
    ['Identifiers matched', sum(samples, 'cohortd_import_identifiers_matched_total'), 'cohort import'],
    ['Identifiers unmatched', sum(samples, 'cohortd_import_identifiers_unmatched_total'), 'cohort import'],
    ['Workspaces', sum(samples, 'cohortd_workspaces'), ''],
    ['Profiles', sum(samples, 'cohortd_profiles'), 'live'],
    ['Cohorts', sum(samples, 'cohortd_cohorts'), ''],
    ['Memberships', sum(samples, 'cohortd_memberships'), 'sum of cohort sizes'],
    ['Log records', sum(samples, 'cohortd_wal_records'), 'written since start'],
    ['Log fsyncs', sum(samples, 'cohortd_wal_fsyncs'), 'group commit'],
    ['Log IO errors', sum(samples, 'cohortd_wal_io_errors'), 'since start'],
    ['Feed events', sum(samples, 'cohortd_feed_events'), 'written since start'],
    ['Rejected requests', sum(samples, 'cohortd_rejected_requests_total'), 'saturated, rate limited, too large…'],
    ['Connectors', count(samples, 'cohortd_connector_lag_events'), ''],
    ['Connector lag (events)', max(samples, 'cohortd_connector_lag_events'), 'the most behind'],
    ['Connector lag (s)', max(samples, 'cohortd_connector_lag_seconds'), 'the oldest undelivered event'],
  ];
}

export async function renderHealth(main) {
  const error = errorBox();
  const probes = h('div', {});
  const figures = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const snaps = h('div', {});
  const refresh = h('button', { type: 'button', class: 'button secondary' }, 'Refresh');
  main.append(
    h('div', { class: 'card-head' }, pageTitle('Health'), refresh),
    h('p', { class: 'lead' }, 'Liveness and readiness probes, and key figures from /metrics.'),
    error,
    h('section', { class: 'card', 'aria-labelledby': 'probes' }, h('h2', { id: 'probes' }, 'Probes'), probes),
    h('section', { class: 'card', 'aria-labelledby': 'figs' }, h('h2', { id: 'figs' }, 'Key figures'), figures),
    h('section', { class: 'card', 'aria-labelledby': 'snap-figs' }, h('h2', { id: 'snap-figs' }, 'Snapshots'), snaps),
  );

  const probe = async (path) => {
    try {
      const r = await api('GET', path);
      return [true, r.status || 'ok'];
    } catch (e) {
      return [false, e.body?.status || e.message];
    }
  };

  async function load() {
    showError(error, null);
    const [health, ready, metrics, snapshots] = await Promise.all([
      probe('/healthz'),
      probe('/readyz'),
      api('GET', '/metrics').catch((e) => e),
      api('GET', '/admin/snapshots').catch((e) => e),
    ]);
    clear(probes).append(
      h(
        'dl',
        { class: 'facts' },
        [['/healthz', health], ['/readyz', ready]].map(([p, [ok, status]]) =>
          h('div', {}, h('dt', {}, p), h('dd', {}, h('span', { class: `badge ${ok ? 'ok' : 'bad'}`, dataset: { probe: p } }, status)))),
      ),
    );
    clear(figures);
    if (metrics instanceof Error) {
      const box = errorBox();
      showError(box, new Error(`/metrics: ${metrics.message}`));
      figures.append(box);
    } else {
      const samples = parseMetrics(String(metrics));
      figures.append(
        h('dl', { class: 'figures', dataset: { figures: '' } }, keyFigures(samples).map(([label, v, hint]) =>
          h('div', { class: 'figure' }, h('dt', {}, label), h('dd', { dataset: { figure: label } }, num(v)), hint ? h('dd', { class: 'hint' }, hint) : null))),
      );
    }
    clear(snaps);
    if (snapshots instanceof Error) {
      const box = errorBox();
      showError(box, snapshots);
      snaps.append(box);
    } else {
      const list = snapshots.snapshots;
      const newest = list[0];
      snaps.append(
        h(
          'dl',
          { class: 'facts' },
          h('div', {}, h('dt', {}, 'Kept'), h('dd', {}, num(list.length))),
          h('div', {}, h('dt', {}, 'Newest'), h('dd', {}, newest ? time(newest.created_at) : '—')),
          h('div', {}, h('dt', {}, 'Newest size'), h('dd', {}, newest ? bytes(newest.bytes) : '—')),
          h('div', {}, h('dt', {}, 'Log position'), h('dd', {}, newest ? num(newest.log_position) : '—')),
        ),
      );
    }
  }

  refresh.addEventListener('click', () => load().catch((e) => showError(error, e)));
  await load().catch((e) => showError(error, e));
}

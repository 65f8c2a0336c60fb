// segments.js — the segment builder and the saved segments. The builder
// edits a tree (filter.js) of nested all/any/none groups and leaves:
// partner cohort includes/excludes, attribute (every SPEC op, dotted
// names, typed values) and event (count or last-performed time). Every
// edit asks `POST /segments/preview` for the live count and a sample
// (debounced 300 ms), and the count is refreshed every few seconds while
// the page is open, so deltas arriving meanwhile show. Save creates or
// replaces (`POST /segments`, `PUT /segments/{id}`); `#/segments/{id}`
// opens a saved segment in the builder.

import { api, allPages, seg } from './api.js';
import { h, clear, table, num, errorBox, showError, pageTitle, partnerName, memberItem, select, inlineLabel, field, toast } from './dom.js';
import { confirmDialog } from './dialog.js';
import {
  GROUP_MODES, ATTRIBUTE_OPS, EVENT_OPS, VALUE_TYPES, DraftError,
  group, cohortLeaf, attributeLeaf, eventLeaf, valueKind, eventKind, toFilter, fromFilter, describe,
} from './filter.js';

const DEBOUNCE_MS = 300;
const REFRESH_MS = 3000;
const SAMPLE = 10;

export async function render(main, [segmentId]) {
  const st = {
    tree: group('and', []),
    partners: [],
    cohorts: [],
    loaded: null,
  };

  // ---- the page ----
  const title = pageTitle(segmentId ? 'Segment' : 'New segment');
  const pageError = errorBox();
  const treeBox = h('div', { class: 'builder' });
  const words = h('p', { class: 'small', id: 'filter-words' });
  const draftError = errorBox();
  const countOut = h('output', { id: 'live-count', 'aria-live': 'polite', dataset: { count: '' } }, '…');
  const liveBox = h('div', { class: 'live stale' }, countOut, h('span', { class: 'muted' }, 'users match'));
  // On a narrow screen the live count's card sits below the builder: a bar
  // held at the bottom of the screen repeats the count while you edit
  // (CSS shows it only there), and takes you to the card and its sample.
  const barCount = h('span', { dataset: { barCount: '' } }, '…');
  const countBar = h('button', { type: 'button', class: 'count-bar', 'aria-hidden': 'true', tabindex: '-1' }, barCount, ' users match · sample ↓');
  const setCount = (text) => {
    countOut.textContent = text;
    barCount.textContent = text;
  };
  const updated = h('p', { class: 'hint', id: 'live-updated' }, 'Counting…');
  const previewError = errorBox();
  previewError.id = 'preview-error';
  const sampleList = h('ul', { class: 'plain', id: 'live-sample' });
  const jsonOut = h('pre', { id: 'filter-json' });
  const refreshBtn = h('button', { type: 'button', class: 'button secondary small' }, 'Refresh now');
  const nameInput = h('input', { type: 'text', name: 'segment-name', autocomplete: 'off', required: true });
  const saveError = errorBox();
  const saveActions = h('div', { class: 'actions' });
  const savedBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));

  main.append(
    title,
    h('p', { class: 'lead' }, 'Combine partner cohorts, attributes and events. The count updates as you edit and every few seconds while you watch.'),
    pageError,
    h(
      'div',
      { class: 'grid-2' },
      h(
        'div',
        {},
        h('section', { class: 'card', 'aria-labelledby': 'builder-title' },
          h('h2', { id: 'builder-title' }, 'Conditions'),
          treeBox,
          h('p', { class: 'hint' }, 'In words:'),
          words,
          draftError),
        countBar,
        h('section', { class: 'card', 'aria-labelledby': 'save-title' },
          h('h2', { id: 'save-title' }, 'Save'),
          field('Segment name', nameInput),
          saveError,
          saveActions),
      ),
      h(
        'section',
        { class: 'card sticky', 'aria-labelledby': 'live-title' },
        h('div', { class: 'card-head' }, h('h2', { id: 'live-title' }, 'Live count'), refreshBtn),
        liveBox,
        updated,
        previewError,
        h('h3', {}, 'Sample'),
        sampleList,
        h('details', {}, h('summary', {}, 'Filter JSON'), jsonOut),
      ),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'saved-title' }, h('h2', { id: 'saved-title' }, 'Saved segments'), savedBox),
  );

  countBar.addEventListener('click', () => document.getElementById('live-title').scrollIntoView({ block: 'start' }));

  // ---- live preview ----
  let debounce = null;
  let seq = 0;
  let inflight = false;
  let failedJson = null;

  function currentFilter() {
    try {
      const f = toFilter(st.tree);
      showError(draftError, null);
      jsonOut.textContent = JSON.stringify(f, null, 2);
      return f;
    } catch (e) {
      if (!(e instanceof DraftError)) throw e;
      showError(draftError, new Error(`Not a filter yet: ${e.message}.`));
      jsonOut.textContent = '';
      return null;
    }
  }

  async function runPreview() {
    debounce = null;
    words.textContent = describe(st.tree, partnerName);
    const filter = currentFilter();
    if (!filter) {
      setCount('—');
      updated.textContent = 'Waiting for a complete filter.';
      return;
    }
    const json = JSON.stringify(filter);
    const mine = ++seq;
    inflight = true;
    try {
      const p = await api('POST', '/segments/preview', { filter, sample_size: SAMPLE });
      if (mine !== seq) return;
      failedJson = null;
      showError(previewError, null);
      if (countOut.textContent !== String(p.count)) setCount(String(p.count));
      countOut.dataset.count = String(p.count);
      liveBox.classList.remove('stale');
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      clear(sampleList).append(
        ...(p.sample.length ? p.sample.map(memberItem) : [h('li', { class: 'muted' }, 'Nobody matches.')]),
      );
    } catch (e) {
      if (mine !== seq) return;
      failedJson = json;
      setCount('—');
      countOut.dataset.count = '';
      updated.textContent = 'The filter was not accepted.';
      clear(sampleList);
      showError(previewError, e);
    } finally {
      if (mine === seq) inflight = false;
    }
  }

  function changed() {
    liveBox.classList.add('stale');
    words.textContent = describe(st.tree, partnerName);
    clearTimeout(debounce);
    debounce = setTimeout(runPreview, DEBOUNCE_MS);
  }

  const poll = setInterval(() => {
    if (document.hidden || debounce || inflight) return;
    let f = null;
    try {
      f = toFilter(st.tree);
    } catch {
      return;
    }
    if (JSON.stringify(f) === failedJson) return; // the same refusal again
    runPreview();
  }, REFRESH_MS);

  refreshBtn.addEventListener('click', () => {
    failedJson = null;
    clearTimeout(debounce);
    runPreview();
  });

  // ---- the tree editor ----
  function renderTree() {
    const focused = document.activeElement?.dataset?.key;
    clear(treeBox).append(renderGroup(st.tree, null, 0));
    if (focused) treeBox.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  /** A structural edit: render again, focus `key` if given, and recount. */
  function rebuild(focusKey) {
    renderTree();
    if (focusKey) treeBox.querySelector(`[data-key="${CSS.escape(focusKey)}"]`)?.focus();
    changed();
  }

  function firstKey(node) {
    return `${node.id}:${node.kind === 'group' ? 'mode' : node.kind === 'cohort' ? 'partner' : 'name'}`;
  }

  function removeButton(node, parent, what) {
    return h(
      'button',
      {
        type: 'button',
        class: 'button secondary small remove',
        'aria-label': `Remove ${what}`,
        onclick: () => {
          const i = parent.children.indexOf(node);
          parent.children.splice(i, 1);
          const next = parent.children[i] || parent.children[i - 1];
          rebuild(next ? firstKey(next) : `${parent.id}:add-cohort`);
        },
      },
      'Remove',
    );
  }

  function renderGroup(g, parent, depth) {
    const mode = select(GROUP_MODES, g.mode, { dataset: { key: `${g.id}:mode` } });
    mode.addEventListener('change', () => {
      g.mode = mode.value;
      rebuild();
    });
    const joiner = g.mode === 'and' ? 'AND' : 'OR';
    const items = [];
    g.children.forEach((c, i) => {
      if (i > 0) items.push(h('li', { class: 'joiner', 'aria-hidden': 'true' }, joiner));
      items.push(h('li', {}, c.kind === 'group' ? renderGroup(c, g, depth + 1) : renderLeaf(c, g)));
    });
    const add = (kind, text, make) =>
      h(
        'button',
        {
          type: 'button',
          class: 'button secondary small',
          dataset: { key: `${g.id}:add-${kind}` },
          onclick: () => {
            const node = make();
            g.children.push(node);
            rebuild(firstKey(node));
          },
        },
        text,
      );
    const modeClass = g.mode === 'none' ? 'not' : g.mode;
    return h(
      'fieldset',
      { class: `group ${modeClass}`, dataset: { group: depth === 0 ? 'root' : g.id } },
      h(
        'legend',
        {},
        depth === 0 ? 'Users matching' : 'Group: matching',
        ...inlineLabel(depth === 0 ? 'Match mode' : 'Group match mode', mode),
        'the following',
      ),
      g.children.length
        ? h('ul', { class: 'group-children' }, items)
        : h('p', { class: 'empty-group' }, g.mode === 'and' ? 'No conditions: everyone matches.' : 'Add at least one condition.'),
      h(
        'div',
        { class: 'add-bar' },
        add('cohort', 'Add cohort filter', () => defaultCohortLeaf()),
        add('attribute', 'Add attribute filter', () => attributeLeaf()),
        add('event', 'Add event filter', () => eventLeaf()),
        depth < 6 ? add('group', 'Add group', () => group(g.mode === 'and' ? 'or' : 'and')) : null,
        parent ? removeButton(g, parent, 'group') : null,
      ),
    );
  }

  function defaultCohortLeaf() {
    const c = st.cohorts[0];
    return c ? cohortLeaf(c.partner, c.cohort_id) : cohortLeaf(st.partners[0] || '', '');
  }

  function input(node, prop, key, props = {}) {
    const el = h('input', { type: 'text', value: node[prop], autocomplete: 'off', spellcheck: 'false', dataset: { key: `${node.id}:${key}` }, ...props });
    el.addEventListener('input', () => {
      node[prop] = el.value;
      changed();
    });
    return el;
  }

  function choice(node, prop, key, options, structural) {
    const el = select(options, node[prop], { dataset: { key: `${node.id}:${key}` } });
    el.addEventListener('change', () => {
      node[prop] = el.value;
      if (structural) rebuild();
      else changed();
    });
    return el;
  }

  function renderLeaf(node, parent) {
    if (node.kind === 'cohort') return renderCohortLeaf(node, parent);
    if (node.kind === 'attribute') return renderAttributeLeaf(node, parent);
    return renderEventLeaf(node, parent);
  }

  function renderCohortLeaf(node, parent) {
    const partners = [...new Set([...st.partners, node.partner].filter(Boolean))];
    const partnerSel = select(partners.map((p) => [p, `${partnerName(p)} Cohorts`]), node.partner, { dataset: { key: `${node.id}:partner` } });
    partnerSel.addEventListener('change', () => {
      node.partner = partnerSel.value;
      node.cohortId = st.cohorts.find((c) => c.partner === node.partner)?.cohort_id || '';
      rebuild();
    });
    const how = select([['includes', 'includes'], ['excludes', 'excludes']], node.excludes ? 'excludes' : 'includes', { dataset: { key: `${node.id}:how` } });
    how.addEventListener('change', () => {
      node.excludes = how.value === 'excludes';
      changed();
    });
    const options = st.cohorts.filter((c) => c.partner === node.partner).map((c) => [c.cohort_id, `${c.name} (${c.cohort_id})`]);
    if (node.cohortId && !options.some(([id]) => id === node.cohortId)) options.push([node.cohortId, node.cohortId]);
    if (options.length === 0) options.push(['', 'no cohorts yet', { disabled: true }]);
    const cohortSel = choice(node, 'cohortId', 'cohort', options, false);
    if (!node.cohortId) cohortSel.value = '';
    return h(
      'div',
      { class: 'leaf', dataset: { leaf: 'cohort' } },
      h('span', { class: 'kind' }, 'Partner cohort'),
      ...inlineLabel('Partner', partnerSel),
      ...inlineLabel('Includes or excludes', how),
      ...inlineLabel('Cohort', cohortSel),
      removeButton(node, parent, 'cohort filter'),
    );
  }

  function renderAttributeLeaf(node, parent) {
    const name = input(node, 'name', 'name', { placeholder: 'plan or address.city' });
    const op = choice(node, 'op', 'op', ATTRIBUTE_OPS.map(([o, t]) => [o, t]), true);
    const parts = [...inlineLabel('Attribute name', name), ...inlineLabel('Attribute comparison', op)];
    const kind = valueKind(node.op);
    if (kind === 'scalar') {
      const type = choice(node, 'valueType', 'type', VALUE_TYPES, true);
      parts.push(...inlineLabel('Value type', type));
      if (node.valueType === 'boolean') {
        if (node.value !== 'true' && node.value !== 'false') node.value = 'true';
        parts.push(...inlineLabel('Value', choice(node, 'value', 'value', [['true', 'true'], ['false', 'false']], false)));
      } else {
        const props = node.valueType === 'number' ? { inputmode: 'decimal' } : {};
        if (node.op === 'greater_than' || node.op === 'less_than') props.placeholder = node.valueType === 'number' ? '10' : '2024-01-01T00:00:00Z';
        parts.push(...inlineLabel('Value', input(node, 'value', 'value', props)));
      }
    } else if (kind === 'string') {
      parts.push(...inlineLabel(node.op.includes('regex') ? 'Regular expression' : 'Value', input(node, 'value', 'value')));
    } else if (kind === 'location') {
      parts.push(
        ...inlineLabel('Latitude', input(node, 'lat', 'lat', { inputmode: 'decimal', placeholder: '38.72' }), true),
        ...inlineLabel('Longitude', input(node, 'lon', 'lon', { inputmode: 'decimal', placeholder: '-9.14' }), true),
        ...inlineLabel('Distance (km)', input(node, 'km', 'km', { inputmode: 'decimal', placeholder: '20' }), true),
      );
    }
    return h(
      'div',
      { class: 'leaf', dataset: { leaf: 'attribute' } },
      h('span', { class: 'kind' }, 'Attribute'),
      ...parts,
      removeButton(node, parent, 'attribute filter'),
    );
  }

  function renderEventLeaf(node, parent) {
    const name = input(node, 'name', 'name', { placeholder: 'purchase' });
    const op = choice(node, 'op', 'op', EVENT_OPS.map(([o, t]) => [o, t]), true);
    const parts = [...inlineLabel('Event name', name), ...inlineLabel('Event condition', op)];
    if (eventKind(node.op) === 'count') {
      parts.push(...inlineLabel('Count', input(node, 'count', 'count', { inputmode: 'numeric' })), h('span', {}, 'times'));
    } else {
      parts.push(...inlineLabel('Time (ISO-8601)', input(node, 'time', 'time', { placeholder: '2024-01-01T00:00:00Z' })));
    }
    return h(
      'div',
      { class: 'leaf', dataset: { leaf: 'event' } },
      h('span', { class: 'kind' }, 'Custom event'),
      ...parts,
      removeButton(node, parent, 'event filter'),
    );
  }

  // ---- saving ----
  function renderSaveActions() {
    clear(saveActions);
    const button = (text, cls, fn) => {
      const b = h('button', { type: 'button', class: `button ${cls}`.trim() }, text);
      b.addEventListener('click', async () => {
        showError(saveError, null);
        b.disabled = true;
        try {
          await fn();
        } catch (e) {
          showError(saveError, e);
        } finally {
          b.disabled = false;
        }
      });
      return b;
    };
    const body = () => {
      const f = toFilter(st.tree);
      const name = nameInput.value.trim();
      if (!name) {
        nameInput.focus();
        throw new Error('Give the segment a name.');
      }
      return { name, filter: f };
    };
    if (st.loaded) {
      saveActions.append(
        button('Save changes', '', async () => {
          const saved = await api('PUT', `/segments/${seg(st.loaded.segment_id)}`, body());
          st.loaded = saved;
          title.textContent = `Segment: ${saved.name}`;
          toast(`Saved “${saved.name}”`);
          await loadSaved();
        }),
        button('Save as new segment', 'secondary', async () => {
          const created = await api('POST', '/segments', body());
          toast('Saved as a new segment');
          location.hash = `#/segments/${seg(created.segment_id)}`;
        }),
        button('Delete segment', 'danger', async () => {
          const s = st.loaded;
          const done = await confirmDialog({
            title: `Delete segment “${s.name}”?`,
            body: h('p', {}, `Segment ${s.segment_id} stops existing for campaign schedulers at once. Its id is never reused.`),
            confirmLabel: 'Delete segment',
            danger: true,
            onConfirm: () => api('DELETE', `/segments/${seg(s.segment_id)}`),
          });
          if (done) {
            toast(`Deleted “${s.name}”`);
            location.hash = '#/segments';
          }
        }),
        h('a', { href: '#/segments', class: 'button secondary' }, 'New segment'),
      );
    } else {
      saveActions.append(
        button('Save segment', '', async () => {
          const created = await api('POST', '/segments', body());
          toast('Segment saved');
          location.hash = `#/segments/${seg(created.segment_id)}`;
        }),
      );
    }
  }

  async function loadSaved() {
    const list = await allPages('/segments?limit=1000', 'segments', 10000);
    clear(savedBox);
    if (list.length === 0) {
      savedBox.append(h('p', { class: 'muted' }, 'No saved segments yet.'));
      return;
    }
    const counts = new Map();
    savedBox.append(
      table(
        [
          {
            label: 'Name',
            wrap: true,
            cell: (s) =>
              h('a', { href: `#/segments/${seg(s.segment_id)}`, 'aria-current': st.loaded?.segment_id === s.segment_id ? 'true' : null }, s.name),
          },
          { label: 'Segment id', cell: (s) => h('code', {}, s.segment_id) },
          {
            label: 'Count',
            num: true,
            cell: (s) => {
              const cell = h('span', { dataset: { segmentCount: s.segment_id } }, '…');
              counts.set(s.segment_id, cell);
              return cell;
            },
          },
        ],
        list,
        { caption: `${list.length} saved segment${list.length === 1 ? '' : 's'}`, dataset: { segments: '' } },
      ),
    );
    // Counts, a few at a time.
    const queue = list.slice(0, 200);
    const worker = async () => {
      for (let s = queue.shift(); s; s = queue.shift()) {
        const cell = counts.get(s.segment_id);
        try {
          cell.textContent = num((await api('GET', `/segments/${seg(s.segment_id)}/count`)).count);
        } catch (e) {
          cell.textContent = '—';
          cell.title = e.message;
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  }

  // ---- start ----
  try {
    const [tp, cohorts] = await Promise.all([
      api('GET', '/technology_partners'),
      allPages('/cohorts?limit=1000', 'cohorts', 10000),
    ]);
    st.partners = tp.technology_partners.map((p) => p.partner);
    st.cohorts = cohorts;
    if (segmentId) {
      const s = await api('GET', `/segments/${seg(segmentId)}`);
      st.loaded = s;
      st.tree = fromFilter(s.filter);
      nameInput.value = s.name;
      title.textContent = `Segment: ${s.name}`;
      document.title = `${s.name} · cohortd`;
    }
  } catch (e) {
    showError(pageError, e);
  }
  renderTree();
  renderSaveActions();
  runPreview();
  loadSaved().catch((e) => {
    clear(savedBox);
    showError(pageError, e);
  });

  return () => {
    clearInterval(poll);
    clearTimeout(debounce);
    seq += 1; // answers still on their way are ignored
  };
}

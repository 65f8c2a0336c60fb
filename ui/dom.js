// dom.js — small DOM helpers shared by the pages: an element builder
// (text is always set as text, never parsed as HTML), labelled fields,
// tables that scroll inside their container, copy buttons, the toast,
// and the formatting of times, numbers, partners and members.

let nextId = 0;

/** A unique element id. */
export function uid(prefix = 'el') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

function append(el, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    child.forEach((c) => append(el, c));
  } else if (child instanceof Node) {
    el.append(child);
  } else {
    el.append(document.createTextNode(String(child)));
  }
}

/**
 * `h('button', {class: 'button', onclick: fn}, 'Save')`. Props starting
 * with `on` are listeners; `dataset` sets data attributes; booleans set or
 * omit an attribute; everything else is an attribute.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value') {
      el.value = v;
    } else if (k === 'checked' || k === 'selected') {
      el[k] = Boolean(v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with attributes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** A labelled control: `<div.field><label for>…</label>control hint</div>`. */
export function field(labelText, control, opts = {}) {
  if (!control.id) control.id = uid('f');
  const label = h('label', { for: control.id, class: opts.hideLabel ? 'visually-hidden' : null }, labelText);
  let hint = null;
  if (opts.hint) {
    hint = h('span', { class: 'hint', id: uid('hint') }, opts.hint);
    control.setAttribute('aria-describedby', hint.id);
  }
  return h('div', { class: `field ${opts.class || ''}`.trim() }, label, control, hint);
}

/** A label for a control placed inline (in a sentence of controls). */
export function inlineLabel(labelText, control, visible = false) {
  if (!control.id) control.id = uid('f');
  return [h('label', { for: control.id, class: visible ? null : 'visually-hidden' }, labelText), control];
}

/** `<select>` from `[[value, text], …]`. */
export function select(options, value, props = {}) {
  const el = h('select', props);
  for (const [v, text, extra] of options) {
    el.append(h('option', { value: v, ...(extra || {}) }, text));
  }
  if (value !== undefined && value !== null) el.value = value;
  return el;
}

/**
 * A table in a horizontally scrolling container. `columns`:
 * `[{label, cell: (row) => node|string, num?, wrap?}]`.
 */
export function table(columns, rows, opts = {}) {
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((r) =>
    h('tr', {}, columns.map((c) => h('td', { class: [c.num ? 'num' : '', c.wrap ? 'wrap' : ''].join(' ').trim() || null }, c.cell(r)))),
  );
  const t = h(
    'table',
    { dataset: opts.dataset },
    opts.caption ? h('caption', {}, opts.caption) : null,
    h('thead', {}, head),
    h('tbody', {}, body),
  );
  // The container is focusable so a keyboard user can scroll it.
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': opts.caption || opts.label || 'Table' }, t);
}

/** An error box (role=alert) that `showError` fills. */
export function errorBox() {
  return h('div', { class: 'error', role: 'alert' });
}

export function showError(box, err) {
  if (!err) {
    box.textContent = '';
    return;
  }
  const message = err.message || String(err);
  // A key that stopped working (revoked workspace, restore): say what to do.
  box.textContent = err.status === 401 ? `${message}: sign out and sign in again with a valid key.` : message;
}

let toastTimer = null;

/** Announces a short message (the toast is a polite live region). */
export function toast(message) {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = message;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove('show'), 2500);
}

/** Copies `text` to the clipboard; falls back to selecting `target`. */
export async function copyText(text, target) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied to the clipboard');
    return true;
  } catch {
    if (target) {
      const range = document.createRange();
      range.selectNodeContents(target);
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    toast('Copy was blocked by the browser: the text is selected, press Ctrl+C');
    return false;
  }
}

/** A "Copy" button for `text` (accessible name says what it copies). */
export function copyButton(text, what, target) {
  return h(
    'button',
    { type: 'button', class: 'button secondary small', 'aria-label': `Copy ${what}`, onclick: () => copyText(text, target) },
    'Copy',
  );
}

const PARTNER_NAMES = {
  hightouch: 'Hightouch',
  segment: 'Segment',
  heap: 'Heap',
  kubit: 'Kubit',
  amplitude: 'Amplitude',
  mixpanel: 'Mixpanel',
  census: 'Census',
};

/** A partner's display name from its slug. */
export function partnerName(slug) {
  return PARTNER_NAMES[slug] || (slug ? slug[0].toUpperCase() + slug.slice(1) : '');
}

/** A time for people (local, to the second), with the exact value kept in `datetime`. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return h('time', { datetime: iso, title: iso }, fmtTime(d));
}

export function fmtTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function num(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : n === undefined || n === null ? '—' : String(n);
}

/** A listed member (SPEC §4): its external_id, alias or device id. */
export function memberLabel(m) {
  if (!m) return '';
  if (m.external_id !== undefined) return m.external_id;
  if (m.user_alias) return `${m.user_alias.alias_name} (${m.user_alias.alias_label})`;
  if (m.device_id !== undefined) return `device ${m.device_id}`;
  if (m.email !== undefined) return m.email;
  if (m.phone !== undefined) return m.phone;
  return m.braze_id || '';
}

/** The lookup page's address for a listed member (none for others). */
export function memberHref(m) {
  const q = new URLSearchParams();
  if (m.external_id !== undefined) q.set('external_id', m.external_id);
  else if (m.user_alias) {
    q.set('alias_name', m.user_alias.alias_name);
    q.set('alias_label', m.user_alias.alias_label);
  } else if (m.device_id !== undefined) q.set('device_id', m.device_id);
  else return null;
  return `#/users?${q}`;
}

/** A member as a link to its lookup, with its braze_id. */
export function memberItem(m) {
  const href = memberHref(m);
  const label = memberLabel(m);
  return h(
    'li',
    {},
    href ? h('a', { href }, label) : label,
    m.braze_id ? h('span', { class: 'muted small' }, ` · ${m.braze_id}`) : null,
  );
}

/** A page heading that takes focus on navigation. */
export function pageTitle(text) {
  return h('h1', { tabindex: '-1', id: 'page-title' }, text);
}

// filter.js — the segment builder's model, without any DOM: a tree of
// groups (all of = and, any of = or, none of = not(or)) and leaves
// (partner cohort includes/excludes, attribute, event), and its exact
// conversion to and from the filter language of SPEC §4
// (`src/segment/mod.rs`). A draft that cannot become a filter yet throws
// a DraftError naming what is missing; everything else is the server's
// to judge (its 400 `message` is shown as is).

export const GROUP_MODES = [
  ['and', 'all of'],
  ['or', 'any of'],
  ['none', 'none of'],
];

/** Attribute ops: [op, label, what value it takes]. */
export const ATTRIBUTE_OPS = [
  ['equals', 'equals', 'scalar'],
  ['not_equals', 'does not equal', 'scalar'],
  ['matches_regex', 'matches regex', 'string'],
  ['does_not_match_regex', 'does not match regex', 'string'],
  ['exists', 'exists', 'none'],
  ['does_not_exist', 'does not exist', 'none'],
  ['greater_than', 'greater than', 'scalar'],
  ['less_than', 'less than', 'scalar'],
  ['includes_value', 'includes value', 'string'],
  ['within_km', 'within km of', 'location'],
];

export const EVENT_OPS = [
  ['more_than', 'performed more than', 'count'],
  ['less_than', 'performed less than', 'count'],
  ['exactly', 'performed exactly', 'count'],
  ['last_performed_after', 'last performed after', 'time'],
  ['last_performed_before', 'last performed before', 'time'],
];

export const VALUE_TYPES = [
  ['string', 'text'],
  ['number', 'number'],
  ['boolean', 'boolean'],
];

export class DraftError extends Error {}

let nextNode = 0;
const id = () => {
  nextNode += 1;
  return `n${nextNode}`;
};

export function group(mode = 'and', children = []) {
  return { id: id(), kind: 'group', mode, children };
}

export function cohortLeaf(partner = '', cohortId = '', excludes = false) {
  return { id: id(), kind: 'cohort', partner, cohortId, excludes };
}

export function attributeLeaf(name = '', op = 'equals', valueType = 'string', value = '') {
  return { id: id(), kind: 'attribute', name, op, valueType, value, lat: '', lon: '', km: '' };
}

export function eventLeaf(name = '', op = 'more_than', count = '0', time = '') {
  return { id: id(), kind: 'event', name, op, count, time };
}

export function valueKind(op) {
  return (ATTRIBUTE_OPS.find(([o]) => o === op) || [])[2] || 'scalar';
}

export function eventKind(op) {
  return (EVENT_OPS.find(([o]) => o === op) || [])[2] || 'count';
}

function number(text, what) {
  const t = String(text).trim();
  const n = Number(t);
  if (t === '' || !Number.isFinite(n)) throw new DraftError(`${what}: enter a number`);
  return n;
}

function scalar(leaf) {
  const what = `attribute ${leaf.name || '(unnamed)'}`;
  switch (leaf.valueType) {
    case 'number':
      return number(leaf.value, what);
    case 'boolean':
      return leaf.value === 'true';
    default:
      return String(leaf.value);
  }
}

/** The filter JSON for a node; an empty "all of" group is everyone. */
export function toFilter(node) {
  switch (node.kind) {
    case 'group': {
      const kids = node.children.map(toFilter);
      if (node.mode === 'and') return kids.length === 0 ? { all: true } : { and: kids };
      if (node.mode === 'or') {
        if (kids.length === 0) throw new DraftError('an "any of" group needs at least one condition');
        return { or: kids };
      }
      if (kids.length === 0) throw new DraftError('a "none of" group needs at least one condition');
      return { not: kids.length === 1 ? kids[0] : { or: kids } };
    }
    case 'cohort': {
      if (!node.partner || !node.cohortId) throw new DraftError('choose a partner cohort');
      const leaf = { cohort: { partner: node.partner, cohort_id: node.cohortId } };
      return node.excludes ? { not: leaf } : leaf;
    }
    case 'attribute': {
      const body = { name: node.name.trim(), op: node.op };
      const kind = valueKind(node.op);
      if (kind === 'scalar') body.value = scalar(node);
      else if (kind === 'string') body.value = String(node.value);
      else if (kind === 'location') {
        body.value = {
          latitude: number(node.lat, 'latitude'),
          longitude: number(node.lon, 'longitude'),
          km: number(node.km, 'km'),
        };
      }
      return { attribute: body };
    }
    case 'event': {
      const body = { name: node.name.trim(), op: node.op };
      if (eventKind(node.op) === 'count') body.count = number(node.count, `event ${node.name || '(unnamed)'} count`);
      else body.time = node.time.trim();
      return { event: body };
    }
    default:
      throw new DraftError(`unknown node ${node.kind}`);
  }
}

function typeOf(v) {
  if (typeof v === 'number') return 'number';
  if (typeof v === 'boolean') return 'boolean';
  return 'string';
}

/** The builder's tree for a filter (as `GET /segments/{id}` returns it). */
export function fromFilter(f) {
  const root = fromNode(f);
  return root.kind === 'group' ? root : group('and', [root]);
}

function fromNode(f) {
  if (!f || typeof f !== 'object') throw new DraftError('not a filter');
  if (Array.isArray(f.and)) return group('and', f.and.map(fromNode));
  if (Array.isArray(f.or)) return group('or', f.or.map(fromNode));
  if (f.all === true) return group('and', []);
  if (f.not) {
    const inner = f.not;
    if (inner.cohort) return cohortLeaf(inner.cohort.partner, inner.cohort.cohort_id, true);
    if (Array.isArray(inner.or)) return group('none', inner.or.map(fromNode));
    return group('none', [fromNode(inner)]);
  }
  if (f.cohort) return cohortLeaf(f.cohort.partner, f.cohort.cohort_id, false);
  if (f.attribute) {
    const a = f.attribute;
    const leaf = attributeLeaf(a.name, a.op);
    if (a.op === 'within_km' && a.value && typeof a.value === 'object') {
      leaf.lat = String(a.value.latitude);
      leaf.lon = String(a.value.longitude);
      leaf.km = String(a.value.km);
    } else if (a.value !== undefined) {
      leaf.valueType = typeOf(a.value);
      leaf.value = String(a.value);
    }
    return leaf;
  }
  if (f.event) {
    const e = f.event;
    return eventLeaf(e.name, e.op, e.count !== undefined ? String(e.count) : '0', e.time || '');
  }
  throw new DraftError(`unsupported filter node ${JSON.stringify(f)}`);
}

function label(list, op) {
  return (list.find(([o]) => o === op) || [op, op])[1];
}

/**
 * The filter in words ("Segment Cohorts includes aud_1 AND plan equals
 * "gold""); `partnerName` names a partner slug.
 */
export function describe(node, partnerName, nested = false) {
  switch (node.kind) {
    case 'group': {
      if (node.children.length === 0) return node.mode === 'and' ? 'everyone' : '(empty group)';
      const parts = node.children.map((c) => describe(c, partnerName, true));
      if (node.mode === 'none') return `NOT (${parts.join(' OR ')})`;
      const text = parts.join(node.mode === 'and' ? ' AND ' : ' OR ');
      return nested && parts.length > 1 ? `(${text})` : text;
    }
    case 'cohort':
      return `${partnerName(node.partner)} Cohorts ${node.excludes ? 'excludes' : 'includes'} ${node.cohortId || '?'}`;
    case 'attribute': {
      const kind = valueKind(node.op);
      const op = label(ATTRIBUTE_OPS, node.op);
      if (kind === 'none') return `${node.name || '?'} ${op}`;
      if (kind === 'location') return `${node.name || '?'} within ${node.km} km of (${node.lat}, ${node.lon})`;
      const v = kind === 'scalar' && node.valueType !== 'string' ? node.value : JSON.stringify(node.value);
      return `${node.name || '?'} ${op} ${v}`;
    }
    case 'event': {
      const op = label(EVENT_OPS, node.op);
      return eventKind(node.op) === 'count'
        ? `${node.name || '?'} ${op} ${node.count} times`
        : `${node.name || '?'} ${op} ${node.time || '?'}`;
    }
    default:
      return '?';
  }
}

// chart.js — the cohort history chart, drawn as inline SVG (no library):
// the cohort's size after each import as a line with one point per import,
// and below it each import's added (up, green) and removed (down, red)
// members as bars. Imports are spaced evenly in order, oldest first; the
// first and last are labelled with their times. Every point and bar has
// a <title> with its figures, and the whole chart a text alternative.

import { svg, h, fmtTime, num } from './dom.js';

const PAD_L = 52;
const PAD_R = 16;
const TOP_H = 170;
const GAP = 34;
const BAR_H = 110;
const H = 14 + TOP_H + GAP + BAR_H + 30;

/** A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten. */
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/**
 * The chart for `imports` as `GET …/imports` lists them (newest first).
 * Returns a <figure> holding the <svg> and its legend; `width` is the
 * width (CSS pixels) it will be shown at, up to 720.
 */
export function historyChart(imports, width = 720) {
  // Drawn at about the width it is shown at, so its text stays legible.
  const W = Math.max(320, Math.min(720, Math.round(width)));
  const rows = [...imports].reverse();
  const n = rows.length;
  const plotW = W - PAD_L - PAD_R;
  // Points and bars stay clear of the axis and the right edge.
  const inset = 24;
  const x = (i) => PAD_L + inset + (n === 1 ? (plotW - 2 * inset) / 2 : (i * (plotW - 2 * inset)) / (n - 1));
  const sizeMax = niceMax(Math.max(0, ...rows.map((r) => r.size)));
  const topY0 = 14;
  const ySize = (v) => topY0 + TOP_H - (v / sizeMax) * TOP_H;
  const barTop = topY0 + TOP_H + GAP;
  const mid = barTop + BAR_H / 2;
  const deltaMax = niceMax(Math.max(0, ...rows.map((r) => Math.max(r.added, r.removed))));
  const half = BAR_H / 2;
  const barW = Math.max(3, Math.min(28, ((plotW - 2 * inset) / Math.max(1, n)) * 0.6));

  const label = n === 0
    ? 'No imports yet.'
    : `Cohort size over ${n} import${n === 1 ? '' : 's'}: from ${num(rows[0].size)} to ${num(rows[n - 1].size)}; ` +
      `${num(rows.reduce((a, r) => a + r.added, 0))} added and ${num(rows.reduce((a, r) => a + r.removed, 0))} removed in all.`;

  const root = svg('svg', {
    class: 'chart',
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': label,
    'data-imports': n,
  });
  root.append(svg('title', {}, 'Cohort size and changes per import'));

  // Size panel: grid, axis labels, line, points.
  for (const t of [0, 0.5, 1]) {
    const v = sizeMax * t;
    const y = ySize(v);
    root.append(svg('line', { class: 'grid', x1: PAD_L, x2: W - PAD_R, y1: y, y2: y }));
    root.append(svg('text', { x: PAD_L - 6, y: y + 4, 'text-anchor': 'end' }, Number.isInteger(v) ? num(v) : v.toFixed(1)));
  }
  root.append(svg('text', { class: 'panel-title', x: PAD_L, y: 10 }, 'Size after each import'));
  root.append(svg('line', { class: 'axis', x1: PAD_L, x2: PAD_L, y1: topY0, y2: topY0 + TOP_H }));
  if (n > 0) {
    const d = rows.map((r, i) => `${i === 0 ? 'M' : 'L'}${x(i).toFixed(1)},${ySize(r.size).toFixed(1)}`).join(' ');
    root.append(svg('path', { class: 'size-line', d }));
    rows.forEach((r, i) => {
      root.append(
        svg(
          'circle',
          { class: 'point', cx: x(i).toFixed(1), cy: ySize(r.size).toFixed(1), r: n > 60 ? 2 : 4, 'data-size': r.size },
          svg('title', {}, `${fmtTime(new Date(r.at))}: size ${num(r.size)}`),
        ),
      );
    });
  }

  // Changes panel: added up, removed down, around a middle line.
  root.append(svg('text', { class: 'panel-title', x: PAD_L, y: barTop - 8 }, 'Added and removed per import'));
  root.append(svg('line', { class: 'axis', x1: PAD_L, x2: W - PAD_R, y1: mid, y2: mid }));
  root.append(svg('text', { x: PAD_L - 6, y: barTop + 8, 'text-anchor': 'end' }, `+${num(deltaMax)}`));
  root.append(svg('text', { x: PAD_L - 6, y: barTop + BAR_H, 'text-anchor': 'end' }, `−${num(deltaMax)}`));
  rows.forEach((r, i) => {
    const when = fmtTime(new Date(r.at));
    const ha = (r.added / deltaMax) * half;
    const hr = (r.removed / deltaMax) * half;
    if (r.added > 0) {
      root.append(
        svg('rect', { class: 'bar-added', x: (x(i) - barW / 2).toFixed(1), y: (mid - ha).toFixed(1), width: barW.toFixed(1), height: Math.max(1, ha).toFixed(1) },
          svg('title', {}, `${when}: +${num(r.added)} added`)),
      );
    }
    if (r.removed > 0) {
      root.append(
        svg('rect', { class: 'bar-removed', x: (x(i) - barW / 2).toFixed(1), y: mid.toFixed(1), width: barW.toFixed(1), height: Math.max(1, hr).toFixed(1) },
          svg('title', {}, `${when}: −${num(r.removed)} removed`)),
      );
    }
  });

  // Time labels: first and last import.
  if (n > 0) {
    const yT = barTop + BAR_H + 20;
    root.append(svg('text', { x: x(0), y: yT, 'text-anchor': n === 1 ? 'middle' : 'start' }, fmtTime(new Date(rows[0].at))));
    if (n > 1) root.append(svg('text', { x: x(n - 1), y: yT, 'text-anchor': 'end' }, fmtTime(new Date(rows[n - 1].at))));
  }

  const legend = h(
    'ul',
    { class: 'legend', 'aria-hidden': 'true' },
    h('li', {}, h('span', { class: 'swatch size' }), 'size'),
    h('li', {}, h('span', { class: 'swatch added' }), 'added'),
    h('li', {}, h('span', { class: 'swatch removed' }), 'removed'),
  );
  return h('figure', { class: 'chart-figure' }, root, legend);
}

// The dashboard scenario in headless Chromium (playwright-core, pinned in
// package.json; the browser is the system's, at CHROMIUM). Run by
// tests/dashboard.rs, which starts cohortd, creates the workspace and its
// profiles, and answers this script's requests for server-side work.
//
// Protocol: every stdout line is JSON. `{"step": name, "ok": true, ...}`
// reports a step (the Rust test checks the figures in it); `{"need": what,
// ...}` asks the test to do something over HTTP (push deltas), and the
// script waits for one line on stdin before going on. On failure a step is
// reported with `ok: false` and the script exits non-zero.
//
// Environment: COHORTD_URL, COHORTD_KEY (a workspace REST API key),
// COHORTD_ADMIN (the admin token), CHROMIUM (executable), and optionally
// COHORTD_SCREENSHOTS (a directory: one PNG per page, 1280×800).

import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';

const URL_BASE = process.env.COHORTD_URL;
const KEY = process.env.COHORTD_KEY;
const ADMIN = process.env.COHORTD_ADMIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.COHORTD_SCREENSHOTS || null;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

for (const [k, v] of Object.entries({ COHORTD_URL: URL_BASE, COHORTD_KEY: KEY, COHORTD_ADMIN: ADMIN })) {
  if (!v) throw new Error(`${k} is not set`);
}

// Never hang the test: give up after a generous bound.
const watchdog = setTimeout(() => {
  report('watchdog', { ok: false, error: 'the scenario took over 240 s' });
  process.exit(3);
}, 240_000);

// ---- protocol ----

function report(step, data = {}) {
  process.stdout.write(`${JSON.stringify({ step, ok: true, ...data })}\n`);
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Asks the Rust test for server-side work; resolves to its JSON answer. */
async function need(what, data = {}) {
  process.stdout.write(`${JSON.stringify({ need: what, ...data })}\n`);
  const { value, done } = await stdin.next();
  if (done) throw new Error(`no answer to ${what}`);
  const answer = JSON.parse(value);
  assert.equal(answer.ok, true, `${what}: ${value}`);
  return answer;
}

// ---- what the page does that it must not ----

const problems = [];
/** HTTP error statuses a step provokes on purpose (their console lines are expected). */
let expectedStatuses = new Set();

function watch(page) {
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    const status = /status of (\d{3})/.exec(text);
    if (status && expectedStatuses.has(Number(status[1]))) return;
    problems.push(`console error: ${text} (${m.location().url})`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => {
    // The browser fetches the icon on its own and cancels that fetch when
    // the page navigates meanwhile: not a failure of the server or the app.
    const aborted = r.failure()?.errorText === 'net::ERR_ABORTED';
    if (aborted && r.url() === `${URL_BASE}/ui/icon.svg`) return;
    problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(URL_BASE) && !u.startsWith('data:')) problems.push(`request off the server: ${u}`);
    if (u.includes(KEY) || u.includes(ADMIN)) problems.push(`a credential in a URL: ${u}`);
  });
  page.on('response', (r) => {
    // 304: revalidated against the asset's ETag (no-cache), unchanged.
    if (r.url().startsWith(`${URL_BASE}/ui`) && ![200, 304].includes(r.status())) problems.push(`asset ${r.url()}: ${r.status()}`);
  });
}

function noProblems(where) {
  assert.deepEqual(problems, [], `${where}: console errors, page errors or CSP violations`);
}

/** Runs `fn` while the given HTTP error statuses are expected. */
async function expecting(statuses, fn) {
  expectedStatuses = new Set(statuses);
  try {
    return await fn();
  } finally {
    expectedStatuses = new Set();
  }
}

// ---- page checks ----

async function until(page, fn, arg, what, timeout = 15_000) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 50 });
  } catch (e) {
    throw new Error(`gave up waiting for ${what}: ${e.message.split('\n')[0]}`);
  }
}

async function go(page, hash) {
  await page.evaluate((h) => {
    location.hash = h;
  }, hash);
  await until(page, (h) => location.hash === h && document.getElementById('page-title'), hash, `page ${hash}`);
}

/**
 * What holds on every page: no horizontal overflow of the body, a label
 * on every control, no CSP violation, nothing wrong in the console.
 */
async function checkPage(page, name) {
  const r = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    unlabelled: [...document.querySelectorAll('input, select, textarea')]
      .filter((el) => el.type !== 'hidden' && el.labels.length === 0)
      .map((el) => el.outerHTML.slice(0, 120)),
    csp: window.__cspViolations || [],
  }));
  assert.ok(r.scrollWidth <= r.innerWidth, `${name}: the page is ${r.scrollWidth}px wide in a ${r.innerWidth}px viewport`);
  assert.deepEqual(r.unlabelled, [], `${name}: controls without a <label>`);
  assert.deepEqual(r.csp, [], `${name}: CSP violations`);
  noProblems(name);
  return r;
}

/** The navigation: collapsed behind "Menu" on a phone, open on a desktop. */
async function checkNav(page, phone, name) {
  const toggle = page.locator('#menu-toggle');
  const nav = page.locator('#nav');
  if (phone) {
    assert.ok(await toggle.isVisible(), `${name}: the Menu button shows on a phone`);
    assert.ok(!(await nav.isVisible()), `${name}: the navigation is collapsed on a phone`);
    await toggle.click();
    assert.ok(await nav.isVisible(), `${name}: Menu opens the navigation`);
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    await page.keyboard.press('Escape');
    assert.ok(!(await nav.isVisible()), `${name}: Escape closes the menu`);
  } else {
    assert.ok(!(await toggle.isVisible()), `${name}: no Menu button on a desktop`);
    assert.ok(await nav.isVisible(), `${name}: the navigation shows on a desktop`);
  }
}

async function shot(page, name) {
  if (!SHOTS) return;
  // Without the transient toast.
  await page.evaluate(() => document.getElementById('toast').classList.remove('show'));
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

/** Each page at both sizes: the layout holds and the navigation adapts. */
async function bothSizes(page, pages, ready) {
  const out = {};
  for (const [size, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(viewport);
    for (const hash of pages) {
      await go(page, hash);
      await ready(hash);
      const r = await checkPage(page, `${hash} at ${viewport.width}×${viewport.height}`);
      await checkNav(page, size === 'phone', hash);
      if (size === 'phone') {
        // A wide table scrolls inside its own container, not the page.
        out[hash] = await page.evaluate(() =>
          [...document.querySelectorAll('.table-wrap')].some((w) => w.scrollWidth > w.clientWidth && getComputedStyle(w).overflowX === 'auto'),
        );
      }
      assert.ok(r.scrollWidth <= viewport.width);
    }
  }
  await page.setViewportSize(DESKTOP);
  return out;
}

async function text(locator) {
  return ((await locator.textContent()) || '').replace(/\s+/g, ' ').trim();
}

async function signIn(page, role, token) {
  await go(page, '#/signin');
  await page.getByRole('radio', { name: role === 'admin' ? 'Operator' : 'Workspace' }).check();
  await page.getByLabel(role === 'admin' ? 'Admin token' : 'REST API key').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const home = role === 'admin' ? '#/operator/workspaces' : '#/partners';
  await until(page, (h) => location.hash === h && document.querySelector('#page-title'), home, `the ${role} start page`);
}

// ---- the scenario ----

async function main() {
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const context = await browser.newContext({ viewport: DESKTOP, deviceScaleFactor: 1, locale: 'en-US', timezoneId: 'UTC' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL_BASE });
  // CSP violations, as the page sees them (besides the console line).
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || 'inline'}`);
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  watch(page);
  let step = 'start';
  try {
    // 1. Sign in with a workspace REST API key.
    step = 'sign_in';
    await page.goto(`${URL_BASE}/ui`);
    await until(page, () => location.hash === '#/signin', null, 'the sign-in page');
    assert.equal(await text(page.locator('h1')), 'Sign in');
    await checkPage(page, 'sign-in');
    await shot(page, 'signin');
    const refused = await expecting([401], async () => {
      await page.getByLabel('REST API key').fill('not-a-key');
      await page.getByRole('button', { name: 'Sign in' }).click();
      const alert = page.locator('.signin [role=alert]');
      await until(page, () => document.querySelector('.signin [role=alert]')?.textContent.length > 0, null, 'the refusal');
      return text(alert);
    });
    assert.match(refused, /REST API key not accepted: missing or invalid bearer token/);
    await signIn(page, 'workspace', KEY);
    const stored = await page.evaluate(() => JSON.parse(sessionStorage.getItem('cohortd.session')));
    assert.deepEqual(stored, { role: 'workspace', token: KEY });
    assert.ok(!page.url().includes(KEY));
    report(step, { refused, title: await page.title() });

    // Keyboard: the skip link is the first stop and focus is visible.
    step = 'keyboard';
    // (A reload keeps the tab's session and starts keyboard navigation at the top.)
    await page.reload();
    await page.locator('section[data-partner="segment"]').waitFor();
    await page.keyboard.press('Tab');
    const skip = await page.evaluate(() => ({
      id: document.activeElement.id,
      outline: getComputedStyle(document.activeElement).outlineStyle,
      top: document.activeElement.getBoundingClientRect().top,
    }));
    assert.equal(skip.id, 'skip-link');
    assert.equal(skip.outline, 'solid', 'focus is visible');
    assert.ok(skip.top >= 0, 'the focused skip link is on screen');
    await page.keyboard.press('Enter');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'page-title');
    report(step, skip);

    // 2. Generate a Segment data import key; it is shown once.
    step = 'generate_key';
    const card = page.locator('section[data-partner="segment"]');
    assert.equal(await text(card.locator('h2')), 'Segment');
    assert.equal(await text(card.locator('code.endpoint')), URL_BASE);
    assert.match(await text(card), /No data import keys yet/);
    await card.getByRole('button', { name: 'Generate key' }).click();
    const fresh = card.locator('[data-new-key="segment"]');
    await fresh.waitFor();
    const key = await text(fresh);
    const keyId = await fresh.getAttribute('data-key-id');
    assert.ok(key.length >= 16, `a full key: ${key}`);
    await until(page, () => document.querySelectorAll('section[data-partner="segment"] table[data-keys] tbody tr').length === 1, null, 'the key listed');
    const masked = await text(card.locator('table[data-keys] tbody tr td:nth-child(2)'));
    assert.notEqual(masked, key, 'listed keys are masked');
    assert.ok(!(await text(card.locator('table[data-keys]'))).includes(key), 'the full key is not in the table');
    // The copy button puts the full key on the clipboard.
    await card.getByRole('button', { name: 'Copy new Segment data import key' }).click();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, key);
    await shot(page, 'partners');

    // A second key, invalidated through the dialog (Escape and Cancel first).
    await card.getByRole('button', { name: 'Generate key' }).click();
    await until(page, (id) => {
      const k = document.querySelector('section[data-partner="segment"] [data-new-key]');
      return k && k.dataset.keyId !== id;
    }, keyId, 'a second key');
    const revoked = await text(fresh);
    const revokedId = await fresh.getAttribute('data-key-id');
    await until(page, () => document.querySelectorAll('section[data-partner="segment"] table[data-keys] tbody tr').length === 2, null, 'two keys listed');
    const invalidate = card.getByRole('button', { name: `Invalidate key ${revokedId}` });
    await invalidate.click();
    const dialog = page.locator('dialog[open]');
    await dialog.waitFor();
    assert.match(await text(dialog), /401 Invalid client secret/);
    // Focus starts inside, and Tab / Shift+Tab stay inside.
    for (const keyName of ['Tab', 'Tab', 'Tab', 'Tab', 'Shift+Tab', 'Shift+Tab', 'Shift+Tab']) {
      await page.keyboard.press(keyName);
      assert.ok(await page.evaluate(() => document.querySelector('dialog[open]').contains(document.activeElement)), `focus stays in the dialog after ${keyName}`);
    }
    await page.keyboard.press('Escape');
    await until(page, () => !document.querySelector('dialog'), null, 'Escape to close the dialog');
    assert.equal(await page.evaluate(() => document.activeElement.getAttribute('aria-label')), `Invalidate key ${revokedId}`, 'focus returns to the opener');
    await invalidate.click();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await until(page, () => !document.querySelector('dialog'), null, 'Cancel to close the dialog');
    assert.equal(await page.locator('section[data-partner="segment"] table[data-keys] tbody tr').count(), 2, 'nothing invalidated');
    await invalidate.click();
    await dialog.getByRole('button', { name: 'Invalidate key' }).click();
    await until(page, () => !document.querySelector('dialog') && document.querySelectorAll('section[data-partner="segment"] table[data-keys] tbody tr').length === 1, null, 'the key invalidated');
    assert.ok((await text(card.locator('table[data-keys]'))).includes(keyId), 'the first key stays');
    await checkPage(page, 'partners');
    report(step, { key, key_id: keyId, revoked, revoked_id: revokedId, masked, endpoint: URL_BASE });

    // 3. The partner pushes deltas with that key (the Rust test, over HTTP).
    step = 'deltas';
    await need('deltas', { key });

    // 4. The cohort, its size and history.
    step = 'cohort';
    await go(page, '#/cohorts');
    await page.locator('table[data-cohorts]').waitFor();
    const row = page.locator('table[data-cohorts] tbody tr', { hasText: 'Big spenders' });
    const cells = await row.locator('td').allTextContents();
    assert.deepEqual(cells.slice(0, 4), ['Segment', 'Big spenders', 'aud_1', '3']);
    await checkPage(page, 'cohorts');
    await shot(page, 'cohorts');
    await row.getByRole('link', { name: 'Big spenders' }).click();
    await until(page, () => location.hash === '#/cohorts/segment/aud_1' && document.querySelector('svg.chart'), null, 'the cohort page');
    assert.equal(await text(page.locator('h1')), 'Big spenders');
    assert.equal(await text(page.locator('[data-cohort-size]')), '3');
    const chart = await page.evaluate(() => {
      const s = document.querySelector('svg.chart');
      return {
        points: [...s.querySelectorAll('circle.point')].map((c) => Number(c.dataset.size)),
        added: s.querySelectorAll('rect.bar-added').length,
        removed: s.querySelectorAll('rect.bar-removed').length,
        line: s.querySelector('path.size-line')?.getAttribute('d') || '',
        label: s.getAttribute('aria-label'),
      };
    });
    assert.deepEqual(chart.points, [4, 3], 'one point per import, oldest first');
    assert.equal(chart.added, 1);
    assert.equal(chart.removed, 1);
    assert.match(chart.line, /^M[\d.]+,[\d.]+ L[\d.]+,[\d.]+$/);
    const history = await page.locator('table[data-imports] tbody tr').evaluateAll((rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].slice(1).map((td) => td.textContent)),
    );
    assert.deepEqual(history, [['0', '1', '0', '3'], ['4', '0', '1', '4']], 'newest first: added, removed, unmatched, size');
    const members = await page.locator('[data-members] li a').allTextContents();
    assert.deepEqual([...members].sort(), ['u1', 'u2', 'u3']);
    await checkPage(page, 'cohort');
    await shot(page, 'cohort');
    // Turned to a phone's width on the same page: the chart is drawn again
    // for it (its text stays legible), with the same points; and back.
    const drawnWidth = () => page.evaluate(() => Number(document.querySelector('svg.chart').getAttribute('viewBox').split(' ')[2]));
    const wide = await drawnWidth();
    await page.setViewportSize({ width: 390, height: 844 });
    await until(page, () => Number(document.querySelector('svg.chart').getAttribute('viewBox').split(' ')[2]) <= 390, null, 'the chart drawn for a phone');
    assert.deepEqual(
      await page.evaluate(() => [...document.querySelectorAll('svg.chart circle.point')].map((c) => Number(c.dataset.size))),
      [4, 3],
    );
    await page.setViewportSize({ width: 1280, height: 800 });
    assert.ok(wide > 390, `drawn ${wide} wide at 1280`);
    await until(page, () => Number(document.querySelector('svg.chart').getAttribute('viewBox').split(' ')[2]) > 390, null, 'the chart drawn wide again');
    report(step, { chart, history, members });

    // 5. The segment builder: Segment Cohorts includes aud_1 AND plan equals gold.
    step = 'segment_builder';
    await go(page, '#/segments');
    const count = () => page.evaluate(() => document.getElementById('live-count').dataset.count);
    await until(page, () => document.getElementById('live-count').dataset.count !== '', null, 'the first count');
    const everyone = await count();
    const root = page.locator('[data-group="root"] > .add-bar');
    await root.getByRole('button', { name: 'Add cohort filter' }).click();
    const cohortLeaf = page.locator('[data-leaf="cohort"]');
    assert.equal(await page.evaluate(() => document.activeElement.closest('[data-leaf]')?.dataset.leaf), 'cohort', 'focus moves to the new filter');
    await cohortLeaf.getByLabel('Partner', { exact: true }).selectOption('segment');
    await cohortLeaf.getByLabel('Includes or excludes', { exact: true }).selectOption('includes');
    await cohortLeaf.getByLabel('Cohort', { exact: true }).selectOption('aud_1');
    await until(page, () => document.getElementById('live-count').dataset.count === '3', null, 'the count of aud_1');
    await root.getByRole('button', { name: 'Add attribute filter' }).click();
    const attr = page.locator('[data-leaf="attribute"]');
    await attr.getByLabel('Attribute name', { exact: true }).fill('plan');
    await attr.getByLabel('Attribute comparison', { exact: true }).selectOption('equals');
    await attr.getByLabel('Value type', { exact: true }).selectOption('string');
    await attr.getByLabel('Value', { exact: true }).fill('gold');
    await until(page, () => document.getElementById('live-count').dataset.count === '2', null, 'the count of gold members of aud_1');
    const words = await text(page.locator('#filter-words'));
    assert.equal(words, 'Segment Cohorts includes aud_1 AND plan equals "gold"');
    const sample = await page.locator('#live-sample li a').allTextContents();
    assert.deepEqual([...sample].sort(), ['u1', 'u2']);
    // Another delta arrives (u5, gold): the count follows without an edit.
    await need('another_delta', { key });
    await until(page, () => document.getElementById('live-count').dataset.count === '3', null, 'the live count after another delta');
    // An API error is shown with the API's own message.
    const refusal = await expecting([400], async () => {
      await root.getByRole('button', { name: 'Add attribute filter' }).click();
      const bad = page.locator('[data-leaf="attribute"]').nth(1);
      await bad.getByLabel('Attribute name', { exact: true }).fill('plan');
      await bad.getByLabel('Attribute comparison', { exact: true }).selectOption('matches_regex');
      await bad.getByLabel('Regular expression', { exact: true }).fill('(');
      await until(page, () => document.getElementById('preview-error').textContent.length > 0, null, 'the refusal of a bad regex');
      const message = await text(page.locator('#preview-error'));
      await bad.getByRole('button', { name: 'Remove attribute filter' }).click();
      return message;
    });
    assert.match(refusal, /^invalid filter: invalid regular expression "\(": unclosed group/);
    await until(page, () => document.getElementById('live-count').dataset.count === '3' && !document.getElementById('preview-error').textContent, null, 'the count back');
    const filterJson = JSON.parse(await page.locator('#filter-json').textContent());
    await checkPage(page, 'segment builder');
    await shot(page, 'segments');
    report(step, { everyone, words, sample, refusal, filter: filterJson });

    // 6. Save it, then rename it.
    step = 'save';
    await page.getByLabel('Segment name').fill('Gold big spenders');
    await page.getByRole('button', { name: 'Save segment' }).click();
    // The saved segment's page loads it after the hash changes: wait for
    // its name in the builder, not only for the hash and a filter leaf.
    await until(page, () => /^#\/segments\/[^/]+$/.test(location.hash) && document.querySelector('[data-leaf="attribute"]')
      && document.getElementById([...document.querySelectorAll('label')].find((l) => l.textContent === 'Segment name')?.htmlFor)?.value === 'Gold big spenders',
    null, 'the saved segment opened');
    const segmentId = decodeURIComponent((await page.evaluate(() => location.hash)).split('/')[2]);
    assert.equal(await page.getByLabel('Segment name').inputValue(), 'Gold big spenders');
    assert.equal(await text(page.locator('#filter-words')), words, 'the saved segment loads into the builder');
    await until(page, (id) => document.querySelector(`[data-segment-count="${id}"]`)?.textContent === '3', segmentId, 'the saved count');
    await page.getByLabel('Segment name').fill('Gold big spenders (aud_1)');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await until(page, () => document.getElementById('page-title').textContent === 'Segment: Gold big spenders (aud_1)', null, 'the rename');
    await until(page, () => [...document.querySelectorAll('table[data-segments] a')].some((a) => a.textContent === 'Gold big spenders (aud_1)'), null, 'the renamed segment listed');
    await checkPage(page, 'saved segment');
    report(step, { segment_id: segmentId, name: 'Gold big spenders (aud_1)' });

    // Every kind of node: excludes, nested any/none groups, an event
    // count, a dotted attribute, within_km; then saved and deleted.
    step = 'builder_kinds';
    await go(page, '#/segments');
    await until(page, () => document.getElementById('live-count').dataset.count === '8', null, 'a new builder counting everyone');
    await root.getByRole('button', { name: 'Add cohort filter' }).click();
    const excl = page.locator('[data-leaf="cohort"]');
    await excl.getByLabel('Cohort', { exact: true }).selectOption('aud_2');
    await excl.getByLabel('Includes or excludes', { exact: true }).selectOption('excludes');
    await root.getByRole('button', { name: 'Add group' }).click();
    const anyOf = page.locator('[data-group]:not([data-group="root"])').first();
    assert.equal(await anyOf.locator(':scope > legend select').inputValue(), 'or', 'a group inside "all of" starts as "any of"');
    const anyBar = anyOf.locator(':scope > .add-bar');
    await anyBar.getByRole('button', { name: 'Add event filter' }).click();
    const ev = anyOf.locator('[data-leaf="event"]');
    await ev.getByLabel('Event name', { exact: true }).fill('Viewed');
    await ev.getByLabel('Event condition', { exact: true }).selectOption('more_than');
    await ev.getByLabel('Count', { exact: true }).fill('1');
    await anyBar.getByRole('button', { name: 'Add attribute filter' }).click();
    const city = anyOf.locator('[data-leaf="attribute"]').nth(0);
    await city.getByLabel('Attribute name', { exact: true }).fill('address.city');
    await city.getByLabel('Value', { exact: true }).fill('Lisbon');
    await anyBar.getByRole('button', { name: 'Add attribute filter' }).click();
    const near = anyOf.locator('[data-leaf="attribute"]').nth(1);
    await near.getByLabel('Attribute name', { exact: true }).fill('current_location');
    await near.getByLabel('Attribute comparison', { exact: true }).selectOption('within_km');
    await near.getByLabel('Latitude', { exact: true }).fill('38.7');
    await near.getByLabel('Longitude', { exact: true }).fill('-9.1');
    await near.getByLabel('Distance (km)', { exact: true }).fill('20');
    await anyBar.getByRole('button', { name: 'Add group' }).click();
    const noneOf = anyOf.locator('[data-group]').first();
    await noneOf.locator(':scope > legend select').selectOption('none');
    await noneOf.locator(':scope > .add-bar').getByRole('button', { name: 'Add attribute filter' }).click();
    const free = noneOf.locator('[data-leaf="attribute"]');
    await free.getByLabel('Attribute name', { exact: true }).fill('plan');
    await free.getByLabel('Value', { exact: true }).fill('free');
    await until(page, () => document.getElementById('live-count').dataset.count === '4', null, 'the count of the nested filter');
    const kindsWords = await text(page.locator('#filter-words'));
    assert.equal(
      kindsWords,
      'Segment Cohorts excludes aud_2 AND (Viewed performed more than 1 times OR address.city equals "Lisbon" OR current_location within 20 km of (38.7, -9.1) OR NOT (plan equals "free"))',
    );
    const kindsFilter = JSON.parse(await page.locator('#filter-json').textContent());
    await checkPage(page, 'builder with every kind of node');
    await page.getByLabel('Segment name').fill('Not churning');
    await page.getByRole('button', { name: 'Save segment' }).click();
    await until(page, () => /^#\/segments\/[^/]+$/.test(location.hash) && document.querySelector('[data-leaf="event"]') && document.getElementById('live-count').dataset.count === '4', null, 'the second segment opened');
    const kindsId = decodeURIComponent((await page.evaluate(() => location.hash)).split('/')[2]);
    assert.notEqual(kindsId, segmentId);
    assert.equal(await text(page.locator('#filter-words')), kindsWords, 'it loads back as it was built');
    assert.deepEqual(JSON.parse(await page.locator('#filter-json').textContent()), kindsFilter);
    await page.getByRole('button', { name: 'Delete segment' }).click();
    await page.locator('dialog[open]').getByRole('button', { name: 'Delete segment' }).click();
    await until(page, () => location.hash === '#/segments' && document.querySelectorAll('table[data-segments] tbody tr').length === 1, null, 'back to a new segment after the delete');
    const left = await page.locator('table[data-segments] tbody tr td:first-child').allTextContents();
    assert.deepEqual(left, ['Gold big spenders (aud_1)']);
    report(step, { filter: kindsFilter, words: kindsWords, deleted: kindsId });

    // 7. Look up a user: its cohort and segment, attributes and events.
    step = 'lookup';
    await go(page, '#/users');
    await page.getByLabel('External id').fill('u1');
    await page.getByRole('button', { name: 'Look up' }).click();
    await page.locator('[data-user-cohorts]').waitFor();
    const userCohorts = await page.locator('[data-user-cohorts] li').allTextContents();
    const userSegments = await page.locator('[data-user-segments] li').allTextContents();
    assert.deepEqual(userCohorts, ['Big spenders · Segment · aud_1']);
    assert.deepEqual(userSegments, [`Gold big spenders (aud_1) · ${segmentId}`]);
    await page.locator('[data-custom-attributes]').waitFor();
    const attributes = Object.fromEntries(
      await page.locator('[data-custom-attributes] tbody tr').evaluateAll((rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent))),
    );
    assert.equal(attributes.plan, 'gold');
    const profile = await page.locator('[data-profile]').evaluate((dl) =>
      Object.fromEntries([...dl.querySelectorAll('div')].map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])),
    );
    assert.equal(profile.external_id, 'u1');
    assert.equal(profile.email, 'u1@example.com');
    assert.match(profile.braze_id, /^[0-9a-f]{24}$/);
    const events = await page.locator('[data-custom-events] tbody tr').evaluateAll((rows) =>
      rows.map((r) => [...r.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent)),
    );
    assert.deepEqual(events.find(([n]) => n === 'Viewed'), ['Viewed', '2']);
    await checkPage(page, 'lookup');
    await shot(page, 'lookup');
    // An unknown user: the API's message.
    const unknown = await expecting([404], async () => {
      await page.getByLabel('External id').fill('nobody');
      await page.getByRole('button', { name: 'Look up' }).click();
      await until(page, () => document.querySelector('#lookup-results [role=alert]')?.textContent, null, 'the unknown user');
      return text(page.locator('#lookup-results [role=alert]').first());
    });
    assert.match(unknown, /not found/);
    // By alias, and by device.
    await page.getByLabel('Look up by').selectOption('user_alias');
    await page.getByLabel('Alias name').fill('anon-1');
    await page.getByLabel('Alias label').fill('newsletter');
    await page.getByRole('button', { name: 'Look up' }).click();
    await until(page, () => document.getElementById('lookup-title')?.textContent === 'User alias anon-1 (newsletter)' && document.querySelector('[data-profile]'), null, 'the alias lookup');
    const byAlias = (await page.locator('#lookup-results').innerText()).replace(/\s+/g, ' ');
    assert.match(byAlias, /In no cohort\./);
    assert.match(byAlias, /Aliases anon-1 \(newsletter\)/);
    await page.getByLabel('Look up by').selectOption('device_id');
    await page.getByLabel('Device id').fill('dev-1');
    await page.getByRole('button', { name: 'Look up' }).click();
    await until(page, () => document.getElementById('lookup-title')?.textContent === 'User device dev-1' && document.querySelector('[data-profile]'), null, 'the device lookup');
    const byDevice = (await page.locator('#lookup-results').innerText()).replace(/\s+/g, ' ');
    assert.match(byDevice, /Devices dev-1/);
    assert.match(byDevice, /plan free/);
    await checkPage(page, 'lookup by device');
    report(step, { cohorts: userCohorts, segments: userSegments, attributes, profile, events, unknown });

    // The workspace pages at 1280×800 and 390×844.
    step = 'layout_workspace';
    const ready = {
      '#/partners': () => page.locator('section[data-partner="segment"]').waitFor(),
      '#/cohorts': () => page.locator('table[data-cohorts]').waitFor(),
      '#/cohorts/segment/aud_1': () => page.locator('svg.chart').waitFor(),
      [`#/segments/${encodeURIComponent(segmentId)}`]: () =>
        until(page, () => document.getElementById('live-count').dataset.count === '3', null, 'the segment count'),
      '#/users?external_id=u1': () => page.locator('[data-custom-attributes]').waitFor(),
    };
    const scrolls = await bothSizes(page, Object.keys(ready), (hash) => ready[hash]());
    assert.equal(scrolls['#/cohorts'], true, 'the cohorts table scrolls inside its container on a phone');
    // The live count on a phone: a bar at the bottom of the screen repeats
    // it while the builder is in view; a desktop shows the card beside it.
    const segmentHash = `#/segments/${encodeURIComponent(segmentId)}`;
    const countBar = () =>
      page.evaluate(() => {
        const bar = document.querySelector('.count-bar');
        const r = bar.getBoundingClientRect();
        return {
          shown: getComputedStyle(bar).display !== 'none',
          count: bar.querySelector('[data-bar-count]').textContent,
          onScreen: r.top >= 0 && r.bottom <= innerHeight + 1,
        };
      });
    await page.setViewportSize({ width: 390, height: 844 });
    await go(page, segmentHash);
    await ready[segmentHash]();
    await page.locator('#builder-title').scrollIntoViewIfNeeded();
    const phoneBar = await countBar();
    assert.deepEqual(phoneBar, { shown: true, count: '3', onScreen: true }, 'the count bar on a phone');
    await page.setViewportSize({ width: 1280, height: 800 });
    assert.equal((await countBar()).shown, false, 'no count bar on a desktop');
    report(step, { scrolls, phoneBar });

    // 8. The operator: sign out, sign in with the admin token.
    step = 'operator';
    await page.getByRole('button', { name: 'Sign out' }).click();
    await until(page, () => location.hash === '#/signin', null, 'signed out');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('cohortd.session')), null, 'sign-out forgets the key');
    await signIn(page, 'admin', ADMIN);
    await page.locator('table[data-workspaces]').waitFor();
    const workspaces = await page.locator('table[data-workspaces] tbody tr td:first-child').allTextContents();
    assert.ok(workspaces.includes('dashboard'), `${workspaces}`);
    await page.getByLabel('Workspace name').fill('second');
    await page.getByRole('button', { name: 'Create workspace' }).click();
    const restKey = await text(page.locator('[data-new-rest-key]'));
    assert.ok(restKey.length >= 16);
    await until(page, () => [...document.querySelectorAll('table[data-workspaces] tbody tr td:first-child')].some((td) => td.textContent === 'second'), null, 'the new workspace listed');
    await checkPage(page, 'workspaces');
    await shot(page, 'workspaces');

    // A snapshot, a change after it, and the restore (typed confirmation).
    await go(page, '#/operator/snapshots');
    await page.getByRole('button', { name: 'Take snapshot now' }).click();
    const taken = page.locator('[data-taken]');
    await taken.waitFor();
    const snapshotId = await taken.getAttribute('data-taken');
    await until(page, (id) => [...document.querySelectorAll('table[data-snapshots] code')].some((c) => c.textContent === id), snapshotId, 'the snapshot listed');
    await need('after_snapshot', { snapshot_id: snapshotId, key });
    await page.getByRole('button', { name: `Restore snapshot ${snapshotId}` }).click();
    const restore = page.locator('dialog[open]');
    await restore.waitFor();
    const confirm = restore.getByRole('button', { name: 'Restore snapshot' });
    assert.ok(await confirm.isDisabled(), 'restore waits for the typed id');
    const typed = restore.getByLabel(`Type the snapshot id (${snapshotId}) to confirm`);
    await typed.fill(`${snapshotId}x`);
    assert.ok(await confirm.isDisabled(), 'a wrong id does not enable restore');
    await typed.fill(snapshotId);
    assert.ok(await confirm.isEnabled(), 'the exact id enables restore');
    await checkPage(page, 'restore dialog');
    await shot(page, 'snapshots');
    await confirm.click();
    await until(page, () => !document.querySelector('dialog') && document.querySelector('[data-restored]'), null, 'the restore');
    const restored = await page.locator('[data-restored]').getAttribute('data-restored');
    assert.equal(restored, snapshotId);
    report(step, { workspaces, rest_key: restKey, snapshot_id: snapshotId, restored });
    await need('restored', { snapshot_id: snapshotId });

    // Health: probes and key figures from /metrics.
    step = 'health';
    await go(page, '#/operator/health');
    await page.locator('[data-figures]').waitFor();
    const probes = Object.fromEntries(
      await page.locator('[data-probe]').evaluateAll((els) => els.map((e) => [e.dataset.probe, e.textContent])),
    );
    assert.deepEqual(probes, { '/healthz': 'ok', '/readyz': 'ready' });
    const figures = Object.fromEntries(
      await page.locator('[data-figure]').evaluateAll((els) => els.map((e) => [e.dataset.figure, Number(e.textContent.replace(/,/g, ''))])),
    );
    assert.ok(figures.Requests > 10, `requests: ${figures.Requests}`);
    assert.ok(figures['Cohort deltas applied'] >= 3, `deltas: ${figures['Cohort deltas applied']}`);
    assert.equal(figures.Workspaces, 2);
    await checkPage(page, 'health');
    await shot(page, 'health');
    report(step, { probes, figures });

    step = 'layout_operator';
    const opReady = {
      '#/operator/workspaces': () => page.locator('table[data-workspaces]').waitFor(),
      '#/operator/snapshots': () => page.locator('table[data-snapshots]').waitFor(),
      '#/operator/health': () => page.locator('[data-figures]').waitFor(),
    };
    await bothSizes(page, Object.keys(opReady), (hash) => opReady[hash]());
    // A workspace page asks for a workspace key.
    await go(page, '#/cohorts');
    assert.match(await text(page.locator('main')), /needs a workspace REST API key/);
    noProblems('the end');
    report(step, {});
  } catch (e) {
    const file = join(tmpdir(), `cohortd-dashboard-failure-${process.pid}.png`);
    await page.screenshot({ path: file }).catch(() => {});
    process.stdout.write(`${JSON.stringify({ step, ok: false, error: String(e.stack || e), screenshot: file, problems })}\n`);
    process.exitCode = 1;
  } finally {
    await browser.close();
    clearTimeout(watchdog);
  }
}

await main();
process.exit(process.exitCode || 0);

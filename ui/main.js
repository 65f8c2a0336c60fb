// main.js — the dashboard's entry point: the shell (navigation for the
// signed-in role, the Menu toggle on narrow screens, sign-out, the skip
// link) and the hash router that renders one page at a time into <main>.
// Pages are modules exporting `render(main, params, query, ctx)`; a page may
// return a cleanup function (timers), run when the next page renders.

import { session, clearSession } from './api.js';
import { h, clear, errorBox, showError, pageTitle, toast } from './dom.js';
import * as signin from './signin.js';
import * as partners from './partners.js';
import * as cohorts from './cohorts.js';
import * as segments from './segments.js';
import * as lookup from './lookup.js';
import * as operator from './operator.js';

const ROUTES = [
  { re: /^\/signin$/, role: null, title: 'Sign in', render: signin.render },
  { re: /^\/partners$/, role: 'workspace', title: 'Technology Partners', render: partners.render },
  { re: /^\/cohorts$/, role: 'workspace', title: 'Cohorts', render: cohorts.renderList },
  { re: /^\/cohorts\/([^/]+)\/([^/]+)$/, role: 'workspace', title: 'Cohort', render: cohorts.renderOne },
  { re: /^\/segments$/, role: 'workspace', title: 'Segments', render: segments.render },
  { re: /^\/segments\/([^/]+)$/, role: 'workspace', title: 'Segment', render: segments.render },
  { re: /^\/users$/, role: 'workspace', title: 'User lookup', render: lookup.render },
  { re: /^\/operator\/workspaces$/, role: 'admin', title: 'Workspaces', render: operator.renderWorkspaces },
  { re: /^\/operator\/snapshots$/, role: 'admin', title: 'Snapshots', render: operator.renderSnapshots },
  { re: /^\/operator\/health$/, role: 'admin', title: 'Health', render: operator.renderHealth },
];

const NAV = {
  workspace: [
    ['#/partners', 'Technology Partners'],
    ['#/cohorts', 'Cohorts'],
    ['#/segments', 'Segments'],
    ['#/users', 'User lookup'],
  ],
  admin: [
    ['#/operator/workspaces', 'Workspaces'],
    ['#/operator/snapshots', 'Snapshots'],
    ['#/operator/health', 'Health'],
  ],
};

const HOME = { workspace: '#/partners', admin: '#/operator/workspaces' };

let cleanup = null;
/** Where to go after signing in (the page asked for while signed out). */
let wanted = null;

function home() {
  const s = session();
  return s ? HOME[s.role] : '#/signin';
}

function afterSignIn() {
  const s = session();
  const target = wanted && s && ROUTES.some((r) => r.role === s.role && r.re.test(wanted.slice(1))) ? wanted : home();
  wanted = null;
  if (location.hash === target) route();
  else location.hash = target;
}

function renderShell(path) {
  const s = session();
  const list = document.getElementById('nav-list');
  clear(list);
  for (const [href, text] of s ? NAV[s.role] : []) {
    const here = path === href.slice(1) || path.startsWith(`${href.slice(1)}/`);
    list.append(h('li', {}, h('a', { href, 'aria-current': here ? 'page' : null }, text)));
  }
  document.getElementById('session').hidden = !s;
  document.getElementById('who').textContent = s ? (s.role === 'admin' ? 'Signed in as operator' : 'Signed in to a workspace') : '';
}

function closeMenu() {
  document.getElementById('nav').classList.remove('open');
  document.getElementById('menu-toggle').setAttribute('aria-expanded', 'false');
}

async function route() {
  const hash = location.hash.slice(1);
  if (hash && !hash.startsWith('/')) return; // an in-page anchor
  const [path, qs] = (hash || '/').split('?');
  const query = new URLSearchParams(qs || '');
  const s = session();
  if (path === '/' || path === '') {
    location.replace(home());
    return;
  }
  if (!s && path !== '/signin') {
    wanted = `#${hash}`;
    location.replace('#/signin');
    return;
  }
  if (typeof cleanup === 'function') cleanup();
  cleanup = null;
  closeMenu();
  renderShell(path);
  const main = document.getElementById('main');
  clear(main);
  const r = ROUTES.find((x) => x.re.test(path));
  if (!r) {
    document.title = 'Not found · cohortd';
    main.append(pageTitle('Page not found'), h('p', {}, 'There is no such page. ', h('a', { href: home() }, 'Go to the start page')));
    return;
  }
  if (r.role && s.role !== r.role) {
    document.title = `${r.title} · cohortd`;
    const needs = r.role === 'admin' ? 'the admin token (sign in as operator)' : 'a workspace REST API key';
    main.append(
      pageTitle(r.title),
      h('p', { class: 'notice' }, `This page needs ${needs}. `, h('a', { href: '#/signin' }, 'Sign in again')),
    );
    return;
  }
  document.title = `${r.title} · cohortd`;
  const params = r.re.exec(path).slice(1).map(decodeURIComponent);
  try {
    cleanup = (await r.render(main, params, query, { afterSignIn })) || null;
  } catch (e) {
    const box = errorBox();
    showError(box, e);
    main.append(box);
  }
}

function init() {
  document.getElementById('menu-toggle').addEventListener('click', (e) => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    e.currentTarget.setAttribute('aria-expanded', String(open));
    if (open) nav.querySelector('a, button')?.focus();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && document.getElementById('nav').classList.contains('open') && !document.querySelector('dialog[open]')) {
      closeMenu();
      document.getElementById('menu-toggle').focus();
    }
  });
  document.getElementById('sign-out').addEventListener('click', () => {
    clearSession();
    wanted = null;
    toast('Signed out');
    location.hash = '#/signin';
  });
  document.getElementById('skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const target = document.getElementById('page-title') || document.getElementById('main');
    target.focus();
  });
  window.addEventListener('hashchange', () => {
    route().then(() => {
      // Move focus to the new page unless the page placed it itself.
      if (!document.getElementById('main').contains(document.activeElement)) {
        document.getElementById('page-title')?.focus();
      }
    });
  });
  route();
}

init();

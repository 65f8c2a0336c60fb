// signin.js — the sign-in page: a workspace REST API key (workspace
// pages) or the admin token (operator pages). The credential is checked
// with one read before it is kept (sessionStorage, for this tab only);
// the form posts nowhere, so the key never reaches a URL or a log.

import { api, setSession, session } from './api.js';
import { h, field, errorBox, showError, pageTitle } from './dom.js';

const ROLES = {
  workspace: { label: 'REST API key', check: '/technology_partners', hint: 'The workspace’s REST API key (from POST /admin/workspaces or `cohortd workspace create`).' },
  admin: { label: 'Admin token', check: '/admin/workspaces', hint: 'The operator’s admin token (COHORTD_ADMIN_TOKEN, or the one printed at first start).' },
};

export function render(main, _params, _query, { afterSignIn }) {
  const current = session();
  const key = h('input', { type: 'password', name: 'key', autocomplete: 'off', spellcheck: 'false', required: true });
  const keyField = field(ROLES.workspace.label, key, { hint: ROLES.workspace.hint });
  const radios = Object.entries({ workspace: 'Workspace', admin: 'Operator' }).map(([role, text]) => {
    const input = h('input', { type: 'radio', name: 'role', value: role, checked: role === 'workspace' });
    input.addEventListener('change', () => {
      keyField.querySelector('label').textContent = ROLES[role].label;
      keyField.querySelector('.hint').textContent = ROLES[role].hint;
    });
    return h('label', {}, input, text);
  });
  const error = errorBox();
  const submit = h('button', { type: 'submit', class: 'button' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card', method: 'post', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Sign in as'), h('div', { class: 'radios' }, radios)),
    keyField,
    error,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const role = form.querySelector('input[name=role]:checked').value;
    const token = key.value.trim();
    showError(error, null);
    if (!token) {
      showError(error, new Error(`Enter the ${ROLES[role].label.toLowerCase()}.`));
      key.focus();
      return;
    }
    submit.disabled = true;
    try {
      await api('GET', ROLES[role].check, undefined, { token });
      setSession(role, token);
      key.value = '';
      afterSignIn();
    } catch (err) {
      const what = ROLES[role].label;
      showError(error, new Error(err.status === 401 ? `${what} not accepted: ${err.message}` : err.message));
      key.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(
    h(
      'div',
      { class: 'signin' },
      pageTitle('Sign in'),
      h('p', { class: 'lead' }, 'Use a workspace REST API key for its partners, cohorts and segments, or the admin token for the operator pages. The key stays in this browser tab until you sign out.'),
      current ? h('p', { class: 'notice' }, `You are signed in ${current.role === 'admin' ? 'as operator' : 'to a workspace'}; signing in again replaces it.`) : null,
      form,
    ),
  );
  key.focus();
}

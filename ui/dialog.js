// dialog.js — modal confirmations on the native <dialog>: opened with
// showModal (the page behind is inert), focus moves into it and is
// trapped there (Tab and Shift+Tab wrap), Escape or Cancel closes it, and
// focus returns to whatever opened it. A typed confirmation keeps its
// confirm button disabled until the exact text is typed.

import { h, errorBox, showError, field } from './dom.js';

const FOCUSABLE = 'a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

function trapFocus(dialog, e) {
  if (e.key !== 'Tab') return;
  const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null || el === document.activeElement);
  if (items.length === 0) {
    e.preventDefault();
    return;
  }
  const first = items[0];
  const last = items[items.length - 1];
  if (e.shiftKey && (document.activeElement === first || !dialog.contains(document.activeElement))) {
    e.preventDefault();
    last.focus();
  } else if (!e.shiftKey && (document.activeElement === last || !dialog.contains(document.activeElement))) {
    e.preventDefault();
    first.focus();
  }
}

/**
 * Opens a confirmation dialog. `onConfirm` runs on confirm; if it throws,
 * its message is shown in the dialog, which stays open. Resolves to
 * whatever `onConfirm` returned, or `null` when cancelled.
 *
 * opts: {title, body: nodes, confirmLabel, danger, typed: expected text,
 *        typedLabel, onConfirm}
 */
export function confirmDialog(opts) {
  const opener = document.activeElement;
  return new Promise((resolve) => {
    const titleId = `dlg-title-${Date.now()}`;
    const error = errorBox();
    const confirm = h('button', { type: 'submit', class: `button ${opts.danger ? 'danger' : ''}`.trim() }, opts.confirmLabel || 'Confirm');
    const cancel = h('button', { type: 'button', class: 'button secondary', value: 'cancel' }, 'Cancel');
    let typedInput = null;
    if (opts.typed !== undefined) {
      typedInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', class: 'mono' });
      confirm.disabled = true;
      typedInput.addEventListener('input', () => {
        confirm.disabled = typedInput.value.trim() !== opts.typed;
      });
    }
    const form = h(
      'form',
      { method: 'dialog', class: 'dialog-body' },
      h('h2', { id: titleId }, opts.title),
      opts.body,
      typedInput ? field(opts.typedLabel || `Type ${opts.typed} to confirm`, typedInput) : null,
      error,
      h('div', { class: 'actions' }, cancel, confirm),
    );
    const dialog = h('dialog', { 'aria-labelledby': titleId, 'aria-modal': 'true' }, form);
    let result = null;
    let busy = false;

    dialog.addEventListener('keydown', (e) => trapFocus(dialog, e));
    dialog.addEventListener('cancel', (e) => {
      // Escape: close (unless a confirmation is being sent).
      if (busy) e.preventDefault();
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      if (opener && typeof opener.focus === 'function' && document.contains(opener)) opener.focus();
      resolve(result);
    });
    cancel.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (busy || confirm.disabled) return;
      busy = true;
      confirm.disabled = true;
      showError(error, null);
      try {
        result = opts.onConfirm ? await opts.onConfirm() : true;
        if (result === undefined) result = true;
        busy = false;
        dialog.close();
      } catch (err) {
        busy = false;
        confirm.disabled = typedInput ? typedInput.value.trim() !== opts.typed : false;
        showError(error, err);
      }
    });

    document.body.append(dialog);
    dialog.showModal();
    (typedInput || cancel).focus();
  });
}

// The create form's "public room" part: a checkbox that reveals title,
// description and tags, the warning that a public room's key is published
// (anyone can read it: that is what public means here), and the directory's
// validation texts shown next to each field, word for word as the server
// would answer them (E011), before anything is sent.

import { parseTags, validateListing } from './listing.js';

const $ = (id) => document.getElementById(id);
const FIELDS = ['title', 'description', 'tags'];

function values() {
  return {
    title: $('public-title').value,
    description: $('public-description').value,
    tags: parseTags($('public-tags').value),
  };
}

function showError(field, text) {
  const input = $(`public-${field}`);
  const p = $(`public-${field}-error`);
  p.textContent = text || '';
  p.hidden = !text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function showErrors(errors) {
  for (const f of FIELDS) showError(f, errors[f]);
}

/**
 * Wires the public-room fields of the create form. Returns
 * {read(), reset()}: read() gives {public: false} for a private room,
 * {public: true, ok: true, listing: {title, description, tags}} to send,
 * or {public: true, ok: false} after showing the errors inline and moving
 * the focus to the first field in error.
 */
export function initPublicListing() {
  const box = $('create-public');
  const fields = $('public-fields');
  const sync = () => {
    fields.hidden = !box.checked;
    if (!box.checked) showErrors({});
  };
  box.addEventListener('change', sync);
  sync();
  // Once a field shows an error, it is re-checked as the user types.
  for (const f of FIELDS) {
    $(`public-${f}`).addEventListener('input', () => {
      if ($(`public-${f}-error`).hidden) return;
      showError(f, validateListing(values()).errors[f]);
    });
  }
  return {
    read() {
      if (!box.checked) return { public: false };
      const { ok, errors, listing } = validateListing(values());
      showErrors(errors);
      if (!ok) {
        const first = FIELDS.find((f) => errors[f]);
        $(`public-${first}`).focus();
        return { public: true, ok: false };
      }
      return { public: true, ok: true, listing };
    },
    reset() {
      box.checked = false;
      for (const f of FIELDS) $(`public-${f}`).value = '';
      sync();
    },
  };
}

// The public directory's rules for a room's title, description and tags,
// exactly as the server checks them (PROTOCOL.md §9), with the reference's
// error texts word for word: the create form shows them next to the fields
// before anything is sent, and the server would answer E011 with the same
// text. Pure functions, no DOM.

export const LISTING_LIMITS = Object.freeze({
  TITLE_RUNES: 50,
  DESCRIPTION_RUNES: 200,
  MAX_TAGS: 5,
  TAG_BYTES: 20,
});

/** The tag the server puts first on every daily topic. */
export const DAILY_TOPIC_TAG = 'daily-topic';

export const LISTING_TEXTS = Object.freeze({
  TITLE_REQUIRED: 'title is required',
  TITLE_TOO_LONG: 'title must be 50 characters or less',
  DESCRIPTION_TOO_LONG: 'description must be 200 characters or less',
  TOO_MANY_TAGS: 'maximum 5 tags allowed',
  TAG_LENGTH: 'each tag must be 1-20 characters',
  tagInvalid: (tag) => `tag "${tag}" contains invalid characters (alphanumeric and hyphens only)`,
});

const TAG_RE = /^[A-Za-z0-9-]+$/;
const utf8 = new TextEncoder();

/** Unicode code points (the server's "runes"). */
function runes(s) {
  return [...s].length;
}

function isControl(cp) {
  return cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f);
}

/**
 * The server's sanitising: HTML-like tags `<…>` removed, control characters
 * removed (newline and tab kept), surrounding white space trimmed.
 */
export function sanitizeText(text) {
  if (typeof text !== 'string') return '';
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '<') {
      const end = text.indexOf('>', i);
      if (end >= 0) {
        i = end + 1;
        continue;
      }
    }
    const cp = text.codePointAt(i);
    const ch = String.fromCodePoint(cp);
    if (!isControl(cp) || ch === '\n' || ch === '\t') out += ch;
    i += ch.length;
  }
  return out.trim();
}

/** Tags typed into one field: separated by commas or white space, empty ones and repeats dropped. */
export function parseTags(input) {
  if (typeof input !== 'string') return [];
  const seen = new Set();
  const tags = [];
  for (const t of input.split(/[\s,]+/)) {
    if (!t || seen.has(t)) continue;
    seen.add(t);
    tags.push(t);
  }
  return tags;
}

/**
 * Checks a listing as the server will. Returns
 * {ok, errors: {title?, description?, tags?}, listing: {title, description, tags}}
 * where each error is the reference's text (the first failing rule of that
 * field) and `listing` holds the sanitised values that will be sent.
 */
export function validateListing({ title = '', description = '', tags = [] } = {}) {
  const clean = { title: sanitizeText(title), description: sanitizeText(description), tags: [...tags] };
  const errors = {};
  if (!clean.title) errors.title = LISTING_TEXTS.TITLE_REQUIRED;
  else if (runes(clean.title) > LISTING_LIMITS.TITLE_RUNES) errors.title = LISTING_TEXTS.TITLE_TOO_LONG;
  if (runes(clean.description) > LISTING_LIMITS.DESCRIPTION_RUNES) errors.description = LISTING_TEXTS.DESCRIPTION_TOO_LONG;
  if (clean.tags.length > LISTING_LIMITS.MAX_TAGS) {
    errors.tags = LISTING_TEXTS.TOO_MANY_TAGS;
  } else {
    for (const tag of clean.tags) {
      const bytes = utf8.encode(tag).length;
      if (bytes < 1 || bytes > LISTING_LIMITS.TAG_BYTES) {
        errors.tags = LISTING_TEXTS.TAG_LENGTH;
        break;
      }
      if (!TAG_RE.test(tag)) {
        errors.tags = LISTING_TEXTS.tagInvalid(tag);
        break;
      }
    }
  }
  return { ok: Object.keys(errors).length === 0, errors, listing: clean };
}

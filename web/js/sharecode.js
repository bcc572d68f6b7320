// Share codes: `{roomId}:{base64url(roomKey)}[:{ephemeral}[:{expiresAt}[:{epoch}:{owner}]]]`.
// The last two (this client's extension, docs/SECURITY.md §5.3) are the room
// key's epoch and the fingerprint of the owner's signing key (32 hex digits):
// a joiner accepts a new room key only from the member with that key.
// The share link carries the code in the URL fragment, which browsers never
// send to a server. This client makes one form, `https://host/#{code}`, and
// also reads the original Arthas client's `https://host/#/join/{code}`, so
// links from either client open in either.

import { fromBase64Url } from './encoding.js';

const ROOM_ID_RE = /^[A-Za-z0-9_-]{21}$/;
/** The original Arthas client's route in front of the code: `#/join/{code}`. */
const JOIN_ROUTE = '/join/';
const KEY_RE = /^[A-Za-z0-9_-]{43}$/;
const FINGERPRINT_RE = /^[0-9a-f]{32}$/;

function parseNonNegativeInt(s) {
  if (!/^\d{1,15}$/.test(s)) return null;
  return Number(s);
}

/** Build a share code; segments 3 to 6 appear only when needed. */
export function formatShareCode({ roomId, key, ephemeral = 0, expiresAt = 0, epoch = 0, owner = '' }) {
  const base = `${roomId}:${key}`;
  if (owner) return `${base}:${ephemeral}:${expiresAt}:${epoch}:${owner}`;
  if (expiresAt > 0) return `${base}:${ephemeral}:${expiresAt}`;
  if (ephemeral > 0) return `${base}:${ephemeral}`;
  return base;
}

/**
 * The code in a link, a fragment or a pasted code: what follows `#`, URL-decoded,
 * without the original client's `/join/` route. Null when it cannot be decoded.
 */
export function codeFromLink(input) {
  if (typeof input !== 'string') return null;
  let code = input.trim();
  const hash = code.indexOf('#');
  if (hash >= 0) code = code.slice(hash + 1);
  try {
    code = decodeURIComponent(code);
  } catch {
    return null;
  }
  code = code.trim();
  if (code.startsWith(JOIN_ROUTE)) code = code.slice(JOIN_ROUTE.length).trim();
  return code;
}

/**
 * Parse a share code, or a share link / fragment containing one (either
 * client's form). Returns {roomId, key, ephemeral, expiresAt} or null when invalid.
 */
export function parseShareCode(input) {
  const code = codeFromLink(input);
  if (code === null) return null;
  const parts = code.split(':');
  if (parts.length < 2 || parts.length > 6 || parts.length === 5) return null;
  const [roomId, key] = parts;
  if (!ROOM_ID_RE.test(roomId) || !KEY_RE.test(key)) return null;
  try {
    if (fromBase64Url(key).length !== 32) return null;
  } catch {
    return null;
  }
  let ephemeral = 0;
  let expiresAt = 0;
  if (parts.length >= 3) {
    ephemeral = parseNonNegativeInt(parts[2]);
    if (ephemeral === null) return null;
  }
  if (parts.length >= 4) {
    expiresAt = parseNonNegativeInt(parts[3]);
    if (expiresAt === null) return null;
  }
  if (parts.length === 6) {
    const epoch = parseNonNegativeInt(parts[4]);
    if (epoch === null || !FINGERPRINT_RE.test(parts[5])) return null;
    return { roomId, key, ephemeral, expiresAt, epoch, owner: parts[5] };
  }
  return { roomId, key, ephemeral, expiresAt };
}

/** The share link for a code, on the given origin (fragment only, our one form). */
export function shareLink(origin, code) {
  return `${origin}/#${code}`;
}

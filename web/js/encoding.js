// base64url (RFC 4648 §5, no padding), hex, UTF-8 and random id helpers.

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const LOOKUP = new Int16Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) LOOKUP[ALPHABET.charCodeAt(i)] = i;

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('expected bytes');
}

/** Bytes -> base64url without padding. */
export function toBase64Url(data) {
  const b = toBytes(data);
  let out = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = b.length - i;
  if (rest === 1) {
    const n = b[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (b[i] << 16) | (b[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * base64url -> bytes. Accepts optional trailing '=' padding; rejects any
 * other character (including standard base64 '+' and '/') and impossible
 * lengths. Throws TypeError on invalid input.
 */
export function fromBase64Url(str) {
  if (typeof str !== 'string') throw new TypeError('base64url: expected a string');
  let s = str;
  while (s.endsWith('=')) s = s.slice(0, -1);
  if (s.length % 4 === 1) throw new TypeError('base64url: invalid length');
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let o = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const v = c < 128 ? LOOKUP[c] : -1;
    if (v < 0) throw new TypeError('base64url: invalid character');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // leftover bits must be zero (canonical encoding)
  if (bits > 0 && (acc & ((1 << bits) - 1)) !== 0) throw new TypeError('base64url: non-canonical trailing bits');
  return out;
}

/** Standard base64 with padding (only used by tests to look for leaks). */
export function toBase64(data) {
  const s = toBase64Url(data).replace(/-/g, '+').replace(/_/g, '/');
  return s + '='.repeat((4 - (s.length % 4)) % 4);
}

export function toHex(data) {
  const b = toBytes(data);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export const utf8 = {
  encode: (s) => new TextEncoder().encode(s),
  decode: (b) => new TextDecoder('utf-8', { fatal: true }).decode(b),
};

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** NanoID-style random id (default alphabet, 64 symbols so no modulo bias). */
export function randomId(length = 21) {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let id = '';
  for (const b of bytes) id += ID_ALPHABET[b & 63];
  return id;
}

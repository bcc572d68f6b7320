// All cryptography of the client, on WebCrypto only (browser and Node >= 20).
//
// Room key: AES-256-GCM from crypto.subtle.generateKey, exported raw and
// base64url-encoded (43 chars). Every encryption uses a fresh 12-byte IV from
// crypto.getRandomValues. Chat/reaction/typing iv+ciphertext travel as
// base64url strings; file chunks travel as raw bytes.
// Signatures: Ed25519, fresh key pair per session, over the canonical JSON of
// the payload without `sig` (keys sorted recursively, UTF-8).

import { toBase64Url, fromBase64Url, toHex, utf8 } from './encoding.js';

const subtle = () => {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new Error('WebCrypto is not available (the page must be served over https or from localhost)');
  return s;
};

export const IV_BYTES = 12;
export const KEY_ENCODED_LENGTH = 43;

export function randomIv() {
  return crypto.getRandomValues(new Uint8Array(IV_BYTES));
}

// ------------------------------------------------------------- room key

/** A new AES-256-GCM room key (extractable, so that it can be shared). */
export async function generateRoomKey() {
  return subtle().generateKey({ name: 'AES-GCM', length: 256 }, true, ['encrypt', 'decrypt']);
}

/** Raw export, base64url without padding: always 43 characters. */
export async function exportRoomKey(key) {
  const raw = await subtle().exportKey('raw', key);
  return toBase64Url(raw);
}

/** Import a base64url room key (43 chars = 32 bytes). Non-extractable. */
export async function importRoomKey(encoded) {
  if (typeof encoded !== 'string' || encoded.length !== KEY_ENCODED_LENGTH) {
    throw new Error('invalid room key');
  }
  const raw = fromBase64Url(encoded);
  if (raw.length !== 32) throw new Error('invalid room key');
  return subtle().importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

// ------------------------------------------------------------- AES-GCM

/** AES-GCM with a fresh random IV (or `iv`, which must never repeat under `key`). */
export async function encryptBytes(key, plaintext, iv = randomIv()) {
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv }, key, plaintext);
  return { iv, ciphertext: new Uint8Array(ct) };
}

export async function decryptBytes(key, iv, ciphertext) {
  if (!(iv instanceof Uint8Array) || iv.length !== IV_BYTES) throw new Error('invalid iv');
  const pt = await subtle().decrypt({ name: 'AES-GCM', iv }, key, ciphertext);
  return new Uint8Array(pt);
}

/** Encrypt a string; iv and ciphertext (tag appended) as base64url strings. */
export async function encryptText(key, text) {
  const { iv, ciphertext } = await encryptBytes(key, utf8.encode(text));
  return { iv: toBase64Url(iv), ciphertext: toBase64Url(ciphertext) };
}

export async function decryptText(key, ivB64, ciphertextB64) {
  const pt = await decryptBytes(key, fromBase64Url(ivB64), fromBase64Url(ciphertextB64));
  return utf8.decode(pt);
}

export async function encryptJson(key, value) {
  return encryptText(key, JSON.stringify(value));
}

export async function decryptJson(key, ivB64, ciphertextB64) {
  return JSON.parse(await decryptText(key, ivB64, ciphertextB64));
}

// ------------------------------------------------------------- hashing

export async function sha256Hex(text) {
  const digest = await subtle().digest('SHA-256', utf8.encode(text));
  return toHex(digest);
}

/** Room password as the server expects it: "" or 64 lowercase hex chars. */
export async function hashPassword(password) {
  if (!password) return '';
  return sha256Hex(password);
}

// ------------------------------------------------------------- canonical JSON

/**
 * Canonical JSON: object keys sorted (UTF-16 code unit order, like
 * Array.prototype.sort) at every level, arrays kept in order, primitives as
 * JSON.stringify writes them, no whitespace. Keys whose value is undefined
 * are skipped, as JSON.stringify skips them on the wire.
 */
export function canonicalJson(value) {
  if (value === null || typeof value !== 'object') {
    const s = JSON.stringify(value);
    return s === undefined ? 'null' : s;
  }
  if (Array.isArray(value)) {
    return '[' + value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',') + ']';
  }
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort();
  return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonicalJson(value[k])).join(',') + '}';
}

/** UTF-8 bytes of the canonical JSON of the payload without `sig`. */
export function signableBytes(payload) {
  const rest = {};
  for (const k of Object.keys(payload)) if (k !== 'sig') rest[k] = payload[k];
  return utf8.encode(canonicalJson(rest));
}

// ------------------------------------------------------------- Ed25519

let ed25519Support;

export async function ed25519Supported() {
  if (ed25519Support === undefined) {
    try {
      await subtle().generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
      ed25519Support = true;
    } catch {
      ed25519Support = false;
    }
  }
  return ed25519Support;
}

/** Fresh Ed25519 pair for this session, or null when unsupported. */
export async function generateSigningKeyPair() {
  if (!(await ed25519Supported())) return null;
  const pair = await subtle().generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const raw = await subtle().exportKey('raw', pair.publicKey);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey, publicKeyB64: toBase64Url(raw) };
}

/** The pair as a private JWK (the owner keeps its identity across a reload: app.js, ownerstore.js). */
export async function exportSigningKeyPair(pair) {
  return subtle().exportKey('jwk', pair.privateKey);
}

/** A pair from a private JWK written by exportSigningKeyPair; throws when it is not one. */
export async function importSigningKeyPair(jwk) {
  if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string') {
    throw new Error('not an Ed25519 private key');
  }
  const privateKey = await subtle().importKey('jwk', jwk, { name: 'Ed25519' }, true, ['sign']);
  const publicKey = await importVerifyKey(jwk.x);
  // The public half must belong to the private one (a fingerprint is derived from it).
  const probe = new Uint8Array(32);
  const sig = await subtle().sign({ name: 'Ed25519' }, privateKey, probe);
  if (!(await subtle().verify({ name: 'Ed25519' }, publicKey, sig, probe))) throw new Error('the key halves do not match');
  return { privateKey, publicKey, publicKeyB64: jwk.x };
}

export async function importVerifyKey(publicKeyB64) {
  const raw = fromBase64Url(publicKeyB64);
  if (raw.length !== 32) throw new Error('invalid Ed25519 public key');
  return subtle().importKey('raw', raw, { name: 'Ed25519' }, true, ['verify']);
}

export async function signBytes(privateKey, bytes) {
  return toBase64Url(await subtle().sign({ name: 'Ed25519' }, privateKey, bytes));
}

/** true when payload.sig is a valid signature of the payload by publicKey. */
export async function verifyPayload(publicKey, payload) {
  try {
    if (!payload || typeof payload.sig !== 'string') return false;
    const sig = fromBase64Url(payload.sig);
    if (sig.length !== 64) return false;
    return await subtle().verify({ name: 'Ed25519' }, publicKey, sig, signableBytes(payload));
  } catch {
    return false;
  }
}

// ------------------------------------------------------------- chat payload

/**
 * Build the plaintext chat payload {text, reply?, type?, pubkey?, room?,
 * epoch?, ctr?, dh?, key?, sig?} and
 * sign it when a private key is given. Returns the object (JSON it to send).
 */
export async function buildPayload({ text, reply, type, pubkey, ...bound }, privateKey) {
  const payload = { text: text ?? '' };
  if (reply) payload.reply = reply;
  if (type) payload.type = type;
  if (pubkey) payload.pubkey = pubkey;
  // What binds a payload to its room and place (signatures.js): room,
  // epoch, ctr, and an announcement's dh key or a rekey's key.
  for (const [k, v] of Object.entries(bound)) if (v !== undefined && v !== null) payload[k] = v;
  if (privateKey) payload.sig = await signBytes(privateKey, signableBytes(payload));
  return payload;
}

/**
 * Parse a decrypted chat plaintext. JSON with a string `text` gives the
 * known fields; anything else is plain legacy text.
 */
export function parsePayload(plaintext) {
  try {
    const p = JSON.parse(plaintext);
    if (p && typeof p === 'object' && !Array.isArray(p) && typeof p.text === 'string') {
      return p;
    }
  } catch {
    // legacy plain text
  }
  return { text: plaintext };
}

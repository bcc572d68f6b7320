// Key rotation: the key schedule of docs/SECURITY.md §5.3, on WebCrypto only
// (browser and Node >= 20), so Node's test runner checks it with fixed
// vectors (tests/unit/rekey.test.mjs).
//
// - joinPassword(K, roomId): the room's join password for room key K, 64 hex
//   characters, HKDF-SHA256(ikm = K, salt = roomId, info = "arthas/v1/join");
// - an X25519 key-agreement pair per room session (its public key is
//   announced, signed, with the Ed25519 key);
// - sealRekey / openRekey: the owner's new key for one member, AES-256-GCM
//   under HKDF-SHA256(X25519(owner, member), salt = SHA-256("arthas/v1/rekey"),
//   info = rekeyInfo(...)), with the same info string as additional data;
// - the owner secret and its hash (what the room record keeps).

import { toBase64Url, fromBase64Url, toHex, utf8 } from './encoding.js';
import { sha256Hex } from './crypto.js';

const subtle = () => globalThis.crypto.subtle;

export const JOIN_INFO = 'arthas/v1/join';
export const REKEY_SALT_LABEL = 'arthas/v1/rekey';

async function hkdf(ikm, salt, info, bytes = 32) {
  const base = await subtle().importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info: utf8.encode(info) }, base, bytes * 8);
  return new Uint8Array(bits);
}

/** The join password for a raw 32-byte room key: 64 lowercase hex characters. */
export async function joinPassword(rawKey, roomId) {
  return toHex(await hkdf(rawKey, utf8.encode(roomId), JOIN_INFO));
}

/** The join password for a base64url room key (what a share code carries). */
export async function joinPasswordOf(keyEncoded, roomId) {
  return joinPassword(fromBase64Url(keyEncoded), roomId);
}

/** A fresh owner secret (64 hex characters) and the hash the room keeps. */
export async function newOwnerSecret() {
  const secret = toHex(crypto.getRandomValues(new Uint8Array(32)));
  return { secret, hash: await sha256Hex(secret) };
}

// ------------------------------------------------------------- X25519

let x25519Support;

export async function x25519Supported() {
  if (x25519Support === undefined) {
    try {
      await subtle().generateKey({ name: 'X25519' }, false, ['deriveBits']);
      x25519Support = true;
    } catch {
      x25519Support = false;
    }
  }
  return x25519Support;
}

/** A fresh X25519 pair, or null when the browser has none. */
export async function generateDhKeyPair() {
  if (!(await x25519Supported())) return null;
  const pair = await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits']);
  const raw = await subtle().exportKey('raw', pair.publicKey);
  return { privateKey: pair.privateKey, publicKeyB64: toBase64Url(raw) };
}

/** An X25519 pair from a fixed private scalar (tests: RFC 7748 vectors). */
export async function dhKeyPairFromPrivate(privateRaw, publicRaw) {
  const jwk = { kty: 'OKP', crv: 'X25519', d: toBase64Url(privateRaw), x: toBase64Url(publicRaw), ext: true };
  const privateKey = await subtle().importKey('jwk', jwk, { name: 'X25519' }, true, ['deriveBits']);
  return { privateKey, publicKeyB64: toBase64Url(publicRaw) };
}

function importDhPublic(publicKeyB64) {
  const raw = fromBase64Url(publicKeyB64);
  if (raw.length !== 32) throw new Error('invalid X25519 public key');
  return subtle().importKey('raw', raw, { name: 'X25519' }, false, []);
}

/** The shared secret X25519(privateKey, theirPublic), 32 bytes. */
export async function sharedSecret(privateKey, theirPublicB64) {
  const pub = await importDhPublic(theirPublicB64);
  return new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
}

/** What binds a wrapped key: the room, the new epoch and both parties' keys. */
export function rekeyInfo(roomId, epoch, ownerDhB64, memberDhB64) {
  return `arthas/v1/rekey|${roomId}|${epoch}|${ownerDhB64}|${memberDhB64}`;
}

/** The raw wrap key (tests compare it with an independent HKDF). */
export async function wrapKeyBytes(shared, info) {
  const salt = new Uint8Array(await subtle().digest('SHA-256', utf8.encode(REKEY_SALT_LABEL)));
  return hkdf(shared, salt, info);
}

async function wrapKey(myPrivate, theirPublicB64, info) {
  const raw = await wrapKeyBytes(await sharedSecret(myPrivate, theirPublicB64), info);
  return subtle().importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/**
 * The owner seals `payload` (the signed rekey {type, room, epoch, key, sig})
 * for one member: {iv, ciphertext} as base64url strings.
 */
export async function sealRekey({ ownerDh, memberDhB64, roomId, epoch, payload, iv = crypto.getRandomValues(new Uint8Array(12)) }) {
  const info = rekeyInfo(roomId, epoch, ownerDh.publicKeyB64, memberDhB64);
  const key = await wrapKey(ownerDh.privateKey, memberDhB64, info);
  const ct = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: utf8.encode(info) }, key, utf8.encode(JSON.stringify(payload)));
  return { iv: toBase64Url(iv), ciphertext: toBase64Url(new Uint8Array(ct)) };
}

/**
 * A member opens a rekey from the owner whose announced X25519 key is
 * `ownerDhB64`, for `roomId` and exactly `epoch`. Throws when it does not
 * decrypt (another room, epoch or key, or tampered with).
 */
export async function openRekey({ myDh, ownerDhB64, roomId, epoch, iv, ciphertext }) {
  const info = rekeyInfo(roomId, epoch, ownerDhB64, myDh.publicKeyB64);
  const key = await wrapKey(myDh.privateKey, ownerDhB64, info);
  const pt = await subtle().decrypt({ name: 'AES-GCM', iv: fromBase64Url(iv), additionalData: utf8.encode(info) }, key, fromBase64Url(ciphertext));
  return JSON.parse(utf8.decode(new Uint8Array(pt)));
}

/** Hex digits of a fingerprint shown to people (telling names apart). */
export const SHORT_FINGERPRINT = 8;
/** Hex digits of the owner fingerprint an invite link carries (128 bits: no key can be ground to match it). */
export const OWNER_FINGERPRINT = 32;

/** A fingerprint of a base64url public key: the first `hexDigits` hex digits of its SHA-256. */
export async function fingerprint(publicKeyB64, hexDigits = SHORT_FINGERPRINT) {
  const digest = await subtle().digest('SHA-256', fromBase64Url(publicKeyB64));
  return toHex(new Uint8Array(digest)).slice(0, hexDigits);
}

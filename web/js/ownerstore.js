// What the room owner keeps across a page reload (docs/SECURITY.md §5.1):
// per tab, in sessionStorage (never localStorage, never sent anywhere), one
// record per room id under `arthas.owner.<roomId>`:
//
//   {secret, signing, autoRotate, name, code, at}
//
// - secret: the owner secret (64 hex characters);
// - signing: the owner's Ed25519 private key as a JWK (or null when the
//   browser cannot sign), so that the owner fingerprint the invite links name
//   stays the same and members keep accepting its new room keys;
// - autoRotate: the room's "new key when someone leaves" setting;
// - name, code: the display name and the current share code, so that the
//   reloaded tab offers to rejoin the room;
// - at: when the record was written (the newest one is offered).
//
// The storage is passed in (the page's sessionStorage; the unit tests give
// an object with the same five members), and every storage failure (quota,
// storage disabled) is swallowed: the room then works as before, without
// surviving a reload.

export const OWNER_STORE_PREFIX = 'arthas.owner.';

const HEX64 = /^[0-9a-f]{64}$/;

/** The storage key of a room's record. */
export function ownerStoreKey(roomId) {
  return `${OWNER_STORE_PREFIX}${roomId}`;
}

/** Writes the record of `roomId`; false when the storage refused. */
export function saveOwner(storage, roomId, { secret, signing = null, autoRotate = false, name = '', code = '' }, now = Date.now()) {
  if (!storage || typeof roomId !== 'string' || !roomId || !HEX64.test(secret)) return false;
  try {
    storage.setItem(ownerStoreKey(roomId), JSON.stringify({ secret, signing, autoRotate: !!autoRotate, name, code, at: now }));
    return true;
  } catch {
    return false;
  }
}

function parseRecord(text) {
  let r;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  if (!r || typeof r !== 'object' || Array.isArray(r) || typeof r.secret !== 'string' || !HEX64.test(r.secret)) return null;
  const signing = r.signing && typeof r.signing === 'object' && !Array.isArray(r.signing) ? r.signing : null;
  return {
    secret: r.secret,
    signing,
    autoRotate: r.autoRotate === true,
    name: typeof r.name === 'string' ? r.name : '',
    code: typeof r.code === 'string' ? r.code : '',
    at: Number.isSafeInteger(r.at) ? r.at : 0,
  };
}

/** The record of `roomId`, or null (none, or not one this client wrote). */
export function loadOwner(storage, roomId) {
  if (!storage || typeof roomId !== 'string' || !roomId) return null;
  try {
    const text = storage.getItem(ownerStoreKey(roomId));
    return text === null ? null : parseRecord(text);
  } catch {
    return null;
  }
}

/** Removes the record of `roomId` (hand-over, leaving, a closed room). */
export function forgetOwner(storage, roomId) {
  if (!storage || typeof roomId !== 'string') return;
  try {
    storage.removeItem(ownerStoreKey(roomId));
  } catch {
    // nothing to forget
  }
}

/** The newest record with a share code, as {roomId, ...record}, or null. */
export function latestOwner(storage) {
  if (!storage) return null;
  let best = null;
  try {
    for (let i = 0; i < storage.length; i++) {
      const key = storage.key(i);
      if (typeof key !== 'string' || !key.startsWith(OWNER_STORE_PREFIX)) continue;
      const r = parseRecord(storage.getItem(key));
      if (r && r.code && (!best || r.at > best.at)) best = { roomId: key.slice(OWNER_STORE_PREFIX.length), ...r };
    }
  } catch {
    return null;
  }
  return best;
}

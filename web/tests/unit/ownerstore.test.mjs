import { test } from 'node:test';
import assert from 'node:assert/strict';
import { saveOwner, loadOwner, forgetOwner, latestOwner, ownerStoreKey, OWNER_STORE_PREFIX } from '../../js/ownerstore.js';
import { exportSigningKeyPair, importSigningKeyPair, generateSigningKeyPair, buildPayload, verifyPayload } from '../../js/crypto.js';

/** The five members of the Web Storage interface the module uses, over a Map. */
class MapStorage {
  #m = new Map();
  get length() { return this.#m.size; }
  key(i) { return [...this.#m.keys()][i] ?? null; }
  getItem(k) { return this.#m.has(k) ? this.#m.get(k) : null; }
  setItem(k, v) { this.#m.set(k, String(v)); }
  removeItem(k) { this.#m.delete(k); }
}

const SECRET = 'ab'.repeat(32);

test('a record is kept per room id and read back', () => {
  const s = new MapStorage();
  assert.equal(saveOwner(s, 'room1', { secret: SECRET, autoRotate: true, name: 'Alice', code: 'room1:k:0:0:1:f' }, 5), true);
  assert.equal(ownerStoreKey('room1'), `${OWNER_STORE_PREFIX}room1`);
  assert.deepEqual(loadOwner(s, 'room1'), { secret: SECRET, signing: null, autoRotate: true, name: 'Alice', code: 'room1:k:0:0:1:f', at: 5 });
  assert.equal(loadOwner(s, 'room2'), null, 'scoped to the room id');
  forgetOwner(s, 'room1');
  assert.equal(loadOwner(s, 'room1'), null);
});

test('only a well-formed owner secret is written or read', () => {
  const s = new MapStorage();
  assert.equal(saveOwner(s, 'r', { secret: 'not hex' }), false);
  assert.equal(s.length, 0);
  s.setItem(ownerStoreKey('r'), '{"secret":"zz"}');
  assert.equal(loadOwner(s, 'r'), null);
  s.setItem(ownerStoreKey('r'), 'not json');
  assert.equal(loadOwner(s, 'r'), null);
  s.setItem(ownerStoreKey('r'), '[1]');
  assert.equal(loadOwner(s, 'r'), null);
});

test('the newest record with a share code is offered after a reload', () => {
  const s = new MapStorage();
  s.setItem('unrelated', 'x');
  saveOwner(s, 'old', { secret: SECRET, code: 'old:k' }, 1);
  saveOwner(s, 'new', { secret: SECRET, code: 'new:k' }, 2);
  saveOwner(s, 'nocode', { secret: SECRET }, 3);
  const kept = latestOwner(s);
  assert.equal(kept.roomId, 'new');
  assert.equal(kept.code, 'new:k');
  assert.equal(latestOwner(new MapStorage()), null);
});

test('a storage that refuses (quota, disabled) is no error', () => {
  const broken = {
    get length() { throw new Error('denied'); },
    key() { throw new Error('denied'); },
    getItem() { throw new Error('denied'); },
    setItem() { throw new Error('quota'); },
    removeItem() { throw new Error('denied'); },
  };
  assert.equal(saveOwner(broken, 'r', { secret: SECRET }), false);
  assert.equal(loadOwner(broken, 'r'), null);
  assert.doesNotThrow(() => forgetOwner(broken, 'r'));
  assert.equal(latestOwner(broken), null);
  assert.equal(saveOwner(null, 'r', { secret: SECRET }), false);
});

test('the owner signing key survives the round trip through the record', async () => {
  const s = new MapStorage();
  const pair = await generateSigningKeyPair();
  saveOwner(s, 'r', { secret: SECRET, signing: await exportSigningKeyPair(pair) });
  const back = await importSigningKeyPair(loadOwner(s, 'r').signing);
  assert.equal(back.publicKeyB64, pair.publicKeyB64, 'the same fingerprint after a reload');
  const signed = await buildPayload({ text: 'still me' }, back.privateKey);
  assert.equal(await verifyPayload(pair.publicKey, signed), true);
});

test('a signing record whose halves do not match is refused', async () => {
  const a = await exportSigningKeyPair(await generateSigningKeyPair());
  const b = await exportSigningKeyPair(await generateSigningKeyPair());
  await assert.rejects(importSigningKeyPair({ ...a, x: b.x }));
  await assert.rejects(importSigningKeyPair({ kty: 'EC' }));
  await assert.rejects(importSigningKeyPair(null));
});

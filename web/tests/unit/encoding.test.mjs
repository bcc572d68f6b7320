import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toBase64Url, fromBase64Url, toBase64, toHex, randomId } from '../../js/encoding.js';

const te = new TextEncoder();

test('base64url RFC 4648 vectors, no padding', () => {
  const v = [['', ''], ['f', 'Zg'], ['fo', 'Zm8'], ['foo', 'Zm9v'], ['foob', 'Zm9vYg'], ['fooba', 'Zm9vYmE'], ['foobar', 'Zm9vYmFy']];
  for (const [plain, enc] of v) {
    assert.equal(toBase64Url(te.encode(plain)), enc);
    assert.deepEqual(fromBase64Url(enc), te.encode(plain));
  }
});

test('base64url uses - and _', () => {
  assert.equal(toBase64Url(new Uint8Array([0xfb, 0xff])), '-_8');
  assert.equal(toBase64Url(new Uint8Array([0xff, 0xff, 0xfe])), '___-');
  assert.deepEqual(fromBase64Url('-_8'), new Uint8Array([0xfb, 0xff]));
  assert.equal(toBase64(new Uint8Array([0xfb, 0xff])), '+/8=');
});

test('base64url decoding accepts padding, rejects garbage', () => {
  assert.deepEqual(fromBase64Url('Zg=='), te.encode('f'));
  assert.deepEqual(fromBase64Url('Zm8='), te.encode('fo'));
  for (const bad of ['+/8', 'Zm9v!', 'Z', 'Zm9vY', 'Zh', 'é', ' Zm9v']) {
    assert.throws(() => fromBase64Url(bad), TypeError, bad);
  }
  assert.throws(() => fromBase64Url(42), TypeError);
});

test('base64url round trip on every length 0..100 and a 32-byte key is 43 chars', () => {
  for (let n = 0; n <= 100; n++) {
    const b = crypto.getRandomValues(new Uint8Array(n));
    assert.deepEqual(fromBase64Url(toBase64Url(b)), b);
  }
  assert.equal(toBase64Url(new Uint8Array(32)).length, 43);
  assert.equal(toBase64Url(new Uint8Array(12)).length, 16);
});

test('hex and random ids', () => {
  assert.equal(toHex(new Uint8Array([0, 15, 255])), '000fff');
  const id = randomId();
  assert.match(id, /^[A-Za-z0-9_-]{21}$/);
  assert.notEqual(randomId(), randomId());
});

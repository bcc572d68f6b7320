import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode, decode, MsgpackError } from './msgpack.mjs';

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

test('envelope known bytes', () => {
  assert.equal(hex(encode({ type: 1, data: {} })), '82a47479706501a46461746180');
  assert.deepEqual(decode(unhex('82a47479706501a46461746180')), { type: 1, data: {} });
});

test('nil and bool', () => {
  assert.equal(hex(encode(null)), 'c0');
  assert.equal(hex(encode(undefined)), 'c0');
  assert.equal(hex(encode(true)), 'c3');
  assert.equal(hex(encode(false)), 'c2');
  assert.equal(decode(unhex('c0')), null);
  assert.equal(decode(unhex('c3')), true);
  assert.equal(decode(unhex('c2')), false);
});

test('integers encode with the smallest width', () => {
  const cases = [
    [0, '00'], [1, '01'], [127, '7f'], [128, 'cc80'], [255, 'ccff'], [256, 'cd0100'],
    [65535, 'cdffff'], [65536, 'ce00010000'], [4294967295, 'ceffffffff'],
    [4294967296, 'cf0000000100000000'], [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
    [-1, 'ff'], [-32, 'e0'], [-33, 'd0df'], [-128, 'd080'], [-129, 'd1ff7f'],
    [-32768, 'd18000'], [-32769, 'd2ffff7fff'], [-2147483648, 'd280000000'],
    [-2147483649, 'd3ffffffff7fffffff'],
  ];
  for (const [v, h] of cases) {
    assert.equal(hex(encode(v)), h, `encode ${v}`);
    assert.equal(decode(unhex(h)), v, `decode ${h}`);
  }
});

test('integers of every width decode (non-minimal too)', () => {
  const cases = [
    ['cc05', 5], ['cd0005', 5], ['ce00000005', 5], ['cf0000000000000005', 5],
    ['d0fb', -5], ['d1fffb', -5], ['d2fffffffb', -5], ['d3fffffffffffffffb', -5],
    ['d005', 5], ['d300000193f60f0600', 1735000000000],
  ];
  for (const [h, v] of cases) assert.equal(decode(unhex(h)), v, h);
});

test('64-bit integers beyond the safe range become BigInt', () => {
  assert.equal(decode(unhex('cfffffffffffffffff')), 18446744073709551615n);
  assert.equal(decode(unhex('d38000000000000000')), -9223372036854775808n);
  assert.equal(hex(encode(18446744073709551615n)), 'cfffffffffffffffff');
  assert.equal(hex(encode(-9223372036854775808n)), 'd38000000000000000');
  assert.equal(hex(encode(5n)), '05');
});

test('floats decode; non-integers encode as float64', () => {
  assert.equal(decode(unhex('cb3ff8000000000000')), 1.5);
  assert.equal(decode(unhex('ca3fc00000')), 1.5);
  assert.equal(hex(encode(1.5)), 'cb3ff8000000000000');
  assert.equal(hex(encode(-0.25)), 'cbbfd0000000000000');
});

test('strings: fixstr, str8, str16, str32 and UTF-8', () => {
  assert.equal(hex(encode('')), 'a0');
  assert.equal(hex(encode('abc')), 'a3616263');
  assert.equal(hex(encode('é')), 'a2c3a9');
  const s31 = 'x'.repeat(31);
  assert.equal(hex(encode(s31)).slice(0, 2), 'bf');
  const s32 = 'x'.repeat(32);
  assert.equal(hex(encode(s32)).slice(0, 4), 'd920');
  const s256 = 'y'.repeat(256);
  assert.equal(hex(encode(s256)).slice(0, 6), 'da0100');
  const s70k = 'z'.repeat(70000);
  assert.equal(hex(encode(s70k)).slice(0, 10), 'db00011170');
  for (const s of ['', 'abc', s31, s32, s256, s70k, '🎉 emoji ✓', 'naïve']) assert.equal(decode(encode(s)), s);
});

test('bin8, bin16, bin32', () => {
  assert.equal(hex(encode(new Uint8Array([1, 2, 3]))), 'c403010203');
  assert.equal(hex(encode(new Uint8Array(0))), 'c400');
  const b300 = new Uint8Array(300).fill(7);
  assert.equal(hex(encode(b300)).slice(0, 6), 'c5012c');
  const b70k = new Uint8Array(70000).fill(9);
  assert.equal(hex(encode(b70k)).slice(0, 10), 'c600011170');
  for (const b of [new Uint8Array(0), b300, b70k]) {
    const d = decode(encode(b));
    assert.ok(d instanceof Uint8Array);
    assert.deepEqual(d, b);
  }
  // ArrayBuffer and other views encode as bin
  assert.equal(hex(encode(new Uint8Array([5, 6]).buffer)), 'c4020506');
  assert.equal(hex(encode(new Uint16Array([0x0102]))).slice(0, 4), 'c402');
});

test('arrays and maps, all header sizes', () => {
  assert.equal(hex(encode([])), '90');
  assert.equal(hex(encode([1, 'a', null])), '9301a161c0');
  const a16 = Array.from({ length: 16 }, (_, i) => i);
  assert.equal(hex(encode(a16)).slice(0, 6), 'dc0010');
  assert.deepEqual(decode(encode(a16)), a16);
  const a70k = new Array(70000).fill(0);
  assert.equal(hex(encode(a70k)).slice(0, 10), 'dd00011170');
  assert.equal(decode(encode(a70k)).length, 70000);
  const m16 = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i]));
  assert.equal(hex(encode(m16)).slice(0, 6), 'de0010');
  assert.deepEqual(decode(encode(m16)), m16);
  assert.equal(hex(encode(new Map([['a', 1]]))), '81a16101');
  // map32 decodes
  assert.deepEqual(decode(unhex('df00000001a16101')), { a: 1 });
  // array32 decodes
  assert.deepEqual(decode(unhex('dd0000000101')), [1]);
});

test('undefined-valued keys are skipped', () => {
  assert.equal(hex(encode({ a: 1, b: undefined })), '81a16101');
});

test('round trip of protocol messages', () => {
  const chunk = {
    type: 0x09,
    data: { transferId: 'V1StGXR8_Z5jdHi6B-myT', index: 79, iv: new Uint8Array(12).fill(1), data: new Uint8Array(65552).fill(2) },
  };
  assert.deepEqual(decode(encode(chunk)), chunk);
  const joined = {
    type: 0x11,
    data: {
      roomId: 'abcdefghijklmnopqrstu',
      members: [{ id: '3f2a9c1b', name: 'Alice', color: '#7f5ac3' }],
      hasPassword: true,
      ephemeral: 0,
      expiresAt: 1767225600,
    },
  };
  assert.deepEqual(decode(encode(joined)), joined);
});

test('decoded maps never touch the prototype', () => {
  // {"__proto__": {"polluted": true}}
  const bytes = encode(new Map([['__proto__', { polluted: true }]]));
  const d = decode(bytes);
  assert.equal(Object.getPrototypeOf(d), Object.prototype);
  assert.deepEqual(Object.keys(d), ['__proto__']);
  assert.equal(({}).polluted, undefined);
  // non-string keys are stringified
  assert.deepEqual(decode(unhex('810102')), { 1: 2 });
});

test('malformed input is rejected', () => {
  for (const h of ['', 'a3 6162', 'cd00', 'c403 0102', '92 01', 'c1', 'c7 01 01 00', 'd4 01 00', '0101', 'a2 c3 28']) {
    assert.throws(() => decode(unhex(h)), MsgpackError, h || '(empty)');
  }
  assert.throws(() => decode('nope'), MsgpackError);
  // absurd declared lengths fail fast
  assert.throws(() => decode(unhex('dd ffffffff')), MsgpackError);
  assert.throws(() => decode(unhex('df ffffffff')), MsgpackError);
});

test('deep nesting is refused', () => {
  let v = [];
  for (let i = 0; i < 100; i++) v = [v];
  assert.throws(() => encode(v), MsgpackError);
  assert.throws(() => decode(new Uint8Array(100).fill(0x91)), MsgpackError);
});

test('unsupported JS values are refused', () => {
  assert.throws(() => encode(() => 1), MsgpackError);
  assert.throws(() => encode(Symbol('x')), MsgpackError);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode, decode, MAX_DEPTH } from '../../js/msgpack.js';

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => new Uint8Array(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

test('envelope known bytes', () => {
  assert.equal(hex(encode({ type: 1, data: {} })), '82a47479706501a46461746180');
  assert.deepEqual(decode(unhex('82a47479706501a46461746180')), { type: 1, data: {} });
});

test('encode returns exactly the bytes, in a buffer of their own', () => {
  const bytes = encode({ type: 1, data: {} });
  assert.equal(bytes.byteOffset, 0);
  assert.equal(bytes.buffer.byteLength, bytes.length);
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

test('integers of every width decode to Numbers (non-minimal too)', () => {
  const cases = [
    ['cc05', 5], ['cd0005', 5], ['ce00000005', 5], ['cf0000000000000005', 5],
    ['d0fb', -5], ['d1fffb', -5], ['d2fffffffb', -5], ['d3fffffffffffffffb', -5],
    ['d005', 5], ['d300000193f60f0600', 1735000000000],
  ];
  for (const [h, v] of cases) assert.equal(decode(unhex(h)), v, h);
});

test('a server time in a 64-bit integer decodes to a Number inside an envelope', () => {
  // RelayMessage {t} as the server writes it: i64 milliseconds
  const d = decode(unhex('82a474797065 14 a464617461 81 a174 d300000193f60f0600'));
  assert.deepEqual(d, { type: 0x14, data: { t: 1735000000000 } });
  assert.equal(typeof d.data.t, 'number');
});

test('64-bit integers beyond the safe range decode exactly, as BigInt', () => {
  assert.equal(decode(unhex('cfffffffffffffffff')), 18446744073709551615n);
  assert.equal(decode(unhex('cf0020000000000000')), 9007199254740992n);
  assert.equal(decode(unhex('d38000000000000000')), -9223372036854775808n);
  assert.deepEqual(decode(unhex('91 d3ffdfffffffffffff')), [-9007199254740993n]);
});

test('BigInts are not encoded', () => {
  assert.throws(() => encode({ t: 5n }));
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
  for (const s of ['', 'abc', s31, s32, s256, s70k, '🎉 emoji ✓', 'naïve', 'ü'.repeat(300)]) assert.equal(decode(encode(s)), s);
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
  // other views encode their bytes as bin
  assert.equal(hex(encode(new Uint16Array([0x0102]))).slice(0, 4), 'c402');
  assert.equal(hex(encode(new Uint8Array([9, 5, 6, 9]).subarray(1, 3))), 'c4020506');
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

test('a __proto__ map key is refused and Object.prototype stays clean', () => {
  // {"__proto__": {"polluted": true}}
  assert.throws(() => decode(unhex('81 a9 5f5f70726f746f5f5f 81 a8 706f6c6c75746564 c3')), /__proto__/);
  assert.equal(({}).polluted, undefined);
});

test('decoded maps are plain objects with own keys only', () => {
  // {"constructor": 1, "toString": 2}
  const d = decode(unhex('82 ab 636f6e7374727563746f72 01 a8 746f537472696e67 02'));
  assert.equal(Object.getPrototypeOf(d), Object.prototype);
  assert.deepEqual(Object.keys(d), ['constructor', 'toString']);
  assert.equal(d.constructor, 1);
  // integer keys become string keys; container keys are refused
  assert.deepEqual(decode(unhex('810102')), { 1: 2 });
  assert.throws(() => decode(unhex('81 90 01')));
});

test('ext types are refused, timestamps too', () => {
  for (const h of ['c7 01 01 00', 'd4 01 00', 'd6 ff 00000000', 'c9 00000001 05 00']) {
    assert.throws(() => decode(unhex(h)), /not part of the protocol/, h);
  }
});

test('malformed input is refused', () => {
  for (const h of ['', 'a3 6162', 'cd00', 'c403 0102', '92 01', 'c1', '0101', 'cf 0000']) {
    assert.throws(() => decode(unhex(h)), Error, h || '(empty)');
  }
  assert.throws(() => decode('nope'), TypeError);
  // absurd declared lengths fail fast
  assert.throws(() => decode(unhex('dd ffffffff')), RangeError);
  assert.throws(() => decode(unhex('df ffffffff')), RangeError);
  assert.throws(() => decode(unhex('db ffffffff')), RangeError);
  assert.throws(() => decode(unhex('c6 ffffffff')), RangeError);
});

test('nesting deeper than MAX_DEPTH is refused both ways', () => {
  const nested = (n) => {
    let v = [];
    for (let i = 1; i < n; i++) v = [v];
    return v;
  };
  assert.deepEqual(decode(encode(nested(MAX_DEPTH))), nested(MAX_DEPTH));
  assert.throws(() => encode(nested(MAX_DEPTH + 1)), /deep/);
  const deep = new Uint8Array(100_001).fill(0x91);
  deep[100_000] = 0xc0;
  assert.throws(() => decode(deep), /too deep/);
});

test('unsupported JS values are refused', () => {
  assert.throws(() => encode(() => 1));
  assert.throws(() => encode(Symbol('x')));
});

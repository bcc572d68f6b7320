import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseShareCode, formatShareCode, shareLink, codeFromLink } from '../../js/sharecode.js';

const ROOM = 'X2-KtJ6oRzdxbguxl5DAR';
const KEY = 'AMVGFZBTFLeed7tVncI1oKoFUdNIv6goGz64x0cuU1M';

test('two, three and four segments', () => {
  assert.deepEqual(parseShareCode(`${ROOM}:${KEY}`), { roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 0 });
  assert.deepEqual(parseShareCode(`${ROOM}:${KEY}:30`), { roomId: ROOM, key: KEY, ephemeral: 30, expiresAt: 0 });
  assert.deepEqual(parseShareCode(`${ROOM}:${KEY}:0:1767225600`), { roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 1767225600 });
});

test('links and fragments', () => {
  const want = { roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 0 };
  assert.deepEqual(parseShareCode(`https://chat.example/#${ROOM}:${KEY}`), want);
  assert.deepEqual(parseShareCode(`http://127.0.0.1:8080/#${ROOM}%3A${KEY}`), want);
  assert.deepEqual(parseShareCode(`#${ROOM}:${KEY}`), want);
  assert.deepEqual(parseShareCode(`  ${ROOM}:${KEY}\n`), want);
});

test('links from the original Arthas client (#/join/{code}) are read too', () => {
  const want = { roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 1767225600 };
  assert.deepEqual(parseShareCode(`https://arthas.example/#/join/${ROOM}:${KEY}:0:1767225600`), want);
  assert.deepEqual(parseShareCode(`https://arthas.example/#/join/${encodeURIComponent(`${ROOM}:${KEY}:0:1767225600`)}`), want);
  assert.deepEqual(parseShareCode(`#/join/${ROOM}:${KEY}:0:1767225600`), want);
  assert.deepEqual(parseShareCode(`/join/${ROOM}:${KEY}:0:1767225600`), want);
  assert.equal(codeFromLink(`http://127.0.0.1:8080/#/join/${ROOM}:${KEY}`), `${ROOM}:${KEY}`);
  assert.equal(codeFromLink(`http://127.0.0.1:8080/#${ROOM}:${KEY}`), `${ROOM}:${KEY}`);
  assert.equal(codeFromLink('#%E0%A4%A'), null);
  // only the fragment route: a /join/ path is not a code
  assert.equal(parseShareCode(`https://arthas.example/join/${ROOM}:${KEY}`), null);
  assert.equal(parseShareCode(`#/joinx/${ROOM}:${KEY}`), null);
});

test('invalid codes are rejected', () => {
  const bad = [
    '', ROOM, `${ROOM}:`, `:${KEY}`, `${ROOM}:${KEY}:1:2:3`,
    `${ROOM.slice(1)}:${KEY}`, `${ROOM}x:${KEY}`, `${ROOM}:${KEY.slice(1)}`, `${ROOM}:${KEY}A`,
    `${ROOM}:${KEY.replace('A', '+')}`, `${ROOM.replace('-', '/')}:${KEY}`,
    `${ROOM}:${KEY}:-1`, `${ROOM}:${KEY}:1.5`, `${ROOM}:${KEY}:abc`, `${ROOM}:${KEY}:0:`,
    `${ROOM}:${KEY}:0:1e9`, `${ROOM}:${KEY}:1234567890123456`,
    // 43 chars whose last char carries non-zero padding bits: not 32 canonical bytes
    `${ROOM}:${KEY.slice(0, 42)}N`,
    'https://chat.example/#%E0%A4%A', null, undefined, 42,
  ];
  for (const b of bad) assert.equal(parseShareCode(b), null, String(b));
});

test('an owned room code carries the key epoch and the owner fingerprint', () => {
  const c = { roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 0, epoch: 3, owner: '0a1b2c3d'.repeat(4) };
  assert.equal(formatShareCode(c), `${ROOM}:${KEY}:0:0:3:${'0a1b2c3d'.repeat(4)}`);
  assert.deepEqual(parseShareCode(formatShareCode(c)), c);
  for (const b of [`${ROOM}:${KEY}:0:0:3`, `${ROOM}:${KEY}:0:0:x:${'0a1b2c3d'.repeat(4)}`, `${ROOM}:${KEY}:0:0:3:${'0A1B2C3D'.repeat(4)}`, `${ROOM}:${KEY}:0:0:3:${'0a1b2c3d'.repeat(4).slice(1)}`, `${ROOM}:${KEY}:0:0:3:${'0a1b2c3d'.repeat(4)}:x`]) {
    assert.equal(parseShareCode(b), null, b);
  }
});

test('format writes only the segments needed', () => {
  assert.equal(formatShareCode({ roomId: ROOM, key: KEY }), `${ROOM}:${KEY}`);
  assert.equal(formatShareCode({ roomId: ROOM, key: KEY, ephemeral: 30 }), `${ROOM}:${KEY}:30`);
  assert.equal(formatShareCode({ roomId: ROOM, key: KEY, expiresAt: 1767225600 }), `${ROOM}:${KEY}:0:1767225600`);
  assert.equal(formatShareCode({ roomId: ROOM, key: KEY, ephemeral: 5, expiresAt: 9 }), `${ROOM}:${KEY}:5:9`);
  for (const c of [{ roomId: ROOM, key: KEY, ephemeral: 0, expiresAt: 0 }, { roomId: ROOM, key: KEY, ephemeral: 300, expiresAt: 1767225600 }]) {
    assert.deepEqual(parseShareCode(formatShareCode(c)), c);
  }
});

test('the share link keeps the code in the fragment', () => {
  const link = shareLink('https://chat.example', `${ROOM}:${KEY}`);
  const u = new URL(link);
  assert.equal(u.pathname, '/');
  assert.equal(u.search, '');
  assert.equal(u.hash, `#${ROOM}:${KEY}`);
});

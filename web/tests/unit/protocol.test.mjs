import { test } from 'node:test';
import assert from 'node:assert/strict';
import { C, S, errorText, encodeEnvelope, decodeEnvelope, validName, LIMITS } from '../../js/protocol.js';
import { backoffDelay } from '../../js/connection.js';
import { SlidingWindowLimiter } from '../../js/ratelimit.js';
import { encode } from '../../js/msgpack.js';

test('message type numbers', () => {
  assert.deepEqual([C.CREATE_ROOM, C.JOIN_ROOM, C.SEND_MESSAGE, C.LEAVE_ROOM, C.TYPING, C.PONG, C.SEND_REACTION], [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual([C.FILE_META, C.FILE_CHUNK, C.FILE_COMPLETE, C.FILE_CANCEL, C.FILE_ACK], [8, 9, 10, 11, 12]);
  assert.equal(S.ROOM_CREATED, 0x10);
  assert.equal(S.PING, 0x18);
  assert.equal(S.RELAY_FILE_ACK, 0x1e);
});

test('envelopes', () => {
  assert.equal(Buffer.from(encodeEnvelope(C.PONG, { t: 1 })).toString('hex'), '82a47479706506a46461746181a17401');
  assert.deepEqual(decodeEnvelope(encode({ type: 0x18, data: { t: 5 } })), { type: 0x18, data: { t: 5 } });
  assert.throws(() => decodeEnvelope(encode([1, 2])));
  assert.throws(() => decodeEnvelope(encode({ data: {} })));
});

test('E001–E007 become readable sentences', () => {
  for (const code of ['E001', 'E002', 'E003', 'E004', 'E005', 'E006', 'E007']) {
    const t = errorText(code, 'raw');
    assert.ok(t.length > 10 && !t.startsWith('Server error'), code);
  }
  assert.equal(errorText('E006', 'wrong password'), 'Wrong password.');
  assert.match(errorText('E004', 'too many wrong passwords, try again later'), /wrong passwords/);
  assert.match(errorText('E005', 'name must be 1-20 characters'), /name must be 1-20/);
  assert.match(errorText('E005', 'message may not have reached every member, retry'), /may not have reached every member/);
  assert.doesNotMatch(errorText('E005', 'message may not have reached every member, retry'), /invalid/);
  assert.match(errorText('E005', 'service temporarily unavailable, retry'), /briefly unavailable/);
  assert.equal(errorText('E011', 'title is required'), 'The public listing was refused; the room was created as private. (title is required)');
  assert.match(errorText('E010', 'hub is full, room created as private'), /directory is full/);
  assert.equal(errorText('X999', 'something'), 'something');
});

test('name rule: 1..20 code points', () => {
  assert.ok(validName('A'));
  assert.ok(validName('x'.repeat(20)));
  assert.ok(validName('🎉'.repeat(20)));
  assert.ok(!validName(''));
  assert.ok(!validName('x'.repeat(21)));
});

test('reconnect backoff: 1 s doubling to 30 s', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50].map(backoffDelay), [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test('chat limiter: 10 per window, sliding', () => {
  let now = 0;
  const l = new SlidingWindowLimiter(LIMITS.CHAT_PER_WINDOW, LIMITS.CHAT_WINDOW_MS, () => now);
  for (let i = 0; i < 10; i++) {
    assert.ok(l.tryTake());
    now += 100;
  }
  assert.equal(l.tryTake(), false);
  assert.equal(l.msUntilFree(), 10_000 - 1000 + 1);
  now = 10_000;
  assert.ok(l.tryTake());
  assert.equal(l.tryTake(), false);
  now = 10_100;
  assert.ok(l.tryTake());
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageIndex, stableIdOf, STABLE_ID_TOLERANCE_MS } from '../../js/messageindex.js';

const T = 1_735_000_000_000;

/** An index holding the given records under their own stable ids. */
function indexOf(...records) {
  const index = new MessageIndex();
  for (const rec of records) index.set(stableIdOf(rec.senderId, rec.time), rec);
  return index;
}

test('the stable id is the sender id and the time, joined by a colon', () => {
  assert.equal(stableIdOf('3f2a9c1b', T), '3f2a9c1b:1735000000000');
});

test('an exact stable id finds its message', () => {
  const rec = { senderId: 'a', time: T };
  assert.equal(indexOf(rec, { senderId: 'a', time: T + 1 }).find(stableIdOf('a', T)), rec);
});

test('another clock stamp finds the same sender message closest in time', () => {
  const early = { senderId: 'a', time: T };
  const late = { senderId: 'a', time: T + 10_000 };
  const index = indexOf(early, late);
  assert.equal(index.find(stableIdOf('a', T + 3_000)), early);
  assert.equal(index.find(stableIdOf('a', T + 7_000)), late);
});

test('a stamp further than the tolerance finds nothing', () => {
  const index = indexOf({ senderId: 'a', time: T });
  assert.ok(index.find(stableIdOf('a', T + STABLE_ID_TOLERANCE_MS)));
  assert.equal(index.find(stableIdOf('a', T + STABLE_ID_TOLERANCE_MS + 1)), null);
});

test('another sender message is never found, however close in time', () => {
  assert.equal(indexOf({ senderId: 'a', time: T }).find(stableIdOf('b', T)), null);
});

test('a sender id containing a colon is matched on everything before the last colon', () => {
  const rec = { senderId: 'x:y', time: T };
  assert.equal(indexOf(rec).find(stableIdOf('x:y', T + 5)), rec);
});

test('malformed stable ids find nothing', () => {
  const index = indexOf({ senderId: 'a', time: T });
  for (const id of ['', 'a', ':1735000000000', 'a:', 'a:soon', 'a:NaN']) {
    assert.equal(index.find(id), null, id);
  }
});

test('deleted and cleared messages are no longer found', () => {
  const index = indexOf({ senderId: 'a', time: T }, { senderId: 'b', time: T });
  index.delete(stableIdOf('a', T));
  assert.equal(index.find(stableIdOf('a', T)), null);
  index.clear();
  assert.equal(index.find(stableIdOf('b', T)), null);
});

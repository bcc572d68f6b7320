import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  RoomSignatures, VERDICT, ANNOUNCEMENT, MAX_WAITING_PER_SENDER, KEY_WAIT_MS, MAX_MISSING_COUNTERS,
} from '../../js/signatures.js';
import { buildPayload, generateSigningKeyPair, parsePayload } from '../../js/crypto.js';

/** A clock the test moves by hand. */
function manualClock(start = 1_735_000_000_000) {
  let t = start;
  return { now: () => t, advance: (ms) => { t += ms; } };
}

/** What a payload looks like after the wire: JSON, encrypted, decrypted, parsed. */
const overTheWire = (payload) => parsePayload(JSON.stringify(payload));

/** Alice (a signing member) and Bob's view of the room, Bob with a manual clock. */
async function aliceAndBob() {
  const clock = manualClock();
  const alice = await RoomSignatures.start();
  const bob = await RoomSignatures.start({ now: clock.now });
  return { alice, bob, clock };
}

test('a member signs what it sends and announces its key', async () => {
  const alice = await RoomSignatures.start();
  assert.ok(alice.canSign);
  const payload = await alice.sign({ text: 'hi', reply: { stableId: 'x:1', senderName: 'B', preview: 'yo' } });
  assert.match(payload.sig, /^[A-Za-z0-9_-]{86}$/);
  const ann = await alice.announcement();
  assert.deepEqual(Object.keys(ann).sort(), ['pubkey', 'sig', 'text', 'type']);
  assert.equal(ann.type, 'pubkey');
  assert.equal(ann.text, '');
});

test('a member that cannot sign sends unsigned payloads and no announcement', async () => {
  const plain = new RoomSignatures(null);
  assert.equal(plain.canSign, false);
  assert.deepEqual(await plain.sign({ text: 'hi' }), { text: 'hi' });
  assert.equal(await plain.announcement(), null);
});

test('a message signed by the announced key is verified', async () => {
  const { alice, bob } = await aliceAndBob();
  const learned = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.deepEqual(learned, { outcome: ANNOUNCEMENT.LEARNED, settled: [] });
  assert.equal(await bob.check('alice', overTheWire(await alice.sign({ text: 'hello' })), 'rec'), VERDICT.VERIFIED);
});

test('a changed message fails its signature', async () => {
  const { alice, bob } = await aliceAndBob();
  await bob.learn('alice', overTheWire(await alice.announcement()));
  const payload = overTheWire(await alice.sign({ text: 'pay 10' }));
  assert.equal(await bob.check('alice', { ...payload, text: 'pay 1000' }, 'rec'), VERDICT.FAILED);
});

test('an unsigned message is unknown and does not wait for a key', async () => {
  const { bob } = await aliceAndBob();
  assert.equal(await bob.check('alice', { text: 'legacy' }, 'rec'), VERDICT.UNKNOWN);
  assert.equal(bob.waiting.size, 0);
});

test('a signed message before its sender key is unknown, then verified when the key arrives', async () => {
  const { alice, bob } = await aliceAndBob();
  assert.equal(await bob.check('alice', overTheWire(await alice.sign({ text: 'early' })), 'rec-1'), VERDICT.UNKNOWN);
  const learned = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.equal(learned.outcome, ANNOUNCEMENT.LEARNED);
  assert.deepEqual(learned.settled, [{ subject: 'rec-1', verdict: VERDICT.VERIFIED }]);
  assert.equal(bob.waiting.size, 0);
});

test('a forged message waiting for a key fails when the key arrives', async () => {
  const { alice, bob } = await aliceAndBob();
  const mallory = await RoomSignatures.start();
  await bob.check('alice', overTheWire(await mallory.sign({ text: 'it is me, alice' })), 'forged');
  const { settled } = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.deepEqual(settled, [{ subject: 'forged', verdict: VERDICT.FAILED }]);
});

test('a message waits for its sender key at most KEY_WAIT_MS', async () => {
  const { alice, bob, clock } = await aliceAndBob();
  await bob.check('alice', overTheWire(await alice.sign({ text: 'old' })), 'old');
  clock.advance(KEY_WAIT_MS - 1);
  await bob.check('alice', overTheWire(await alice.sign({ text: 'new' })), 'new');
  clock.advance(1);
  const { settled } = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.deepEqual(settled, [{ subject: 'new', verdict: VERDICT.VERIFIED }]);
});

test('expired waiting messages are dropped when the next one waits', async () => {
  const { alice, bob, clock } = await aliceAndBob();
  await bob.check('alice', overTheWire(await alice.sign({ text: 'a' })), 'a');
  clock.advance(KEY_WAIT_MS);
  await bob.check('carol', overTheWire(await alice.sign({ text: 'b' })), 'b');
  assert.deepEqual([...bob.waiting.keys()], ['carol']);
});

test('at most MAX_WAITING_PER_SENDER messages wait per sender', async () => {
  const { alice, bob } = await aliceAndBob();
  const payload = overTheWire(await alice.sign({ text: 'spam' }));
  for (let i = 0; i <= MAX_WAITING_PER_SENDER; i++) await bob.check('alice', payload, i);
  await bob.check('carol', payload, 'carol-1');
  const { settled } = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.equal(settled.length, MAX_WAITING_PER_SENDER);
  assert.deepEqual(settled.map((s) => s.subject), [...Array(MAX_WAITING_PER_SENDER).keys()]);
  assert.equal(bob.waiting.get('carol').length, 1);
});

test('the first key wins: a different key later is a conflict and does not verify', async () => {
  const { alice, bob } = await aliceAndBob();
  const mallory = await RoomSignatures.start();
  await bob.learn('alice', overTheWire(await alice.announcement()));
  const second = await bob.learn('alice', overTheWire(await mallory.announcement()));
  assert.deepEqual(second, { outcome: ANNOUNCEMENT.CONFLICT, settled: [] });
  assert.equal(await bob.check('alice', overTheWire(await mallory.sign({ text: 'x' })), 'rec'), VERDICT.FAILED);
  assert.equal(await bob.check('alice', overTheWire(await alice.sign({ text: 'y' })), 'rec'), VERDICT.VERIFIED);
});

test('the same key announced again changes nothing', async () => {
  const { alice, bob } = await aliceAndBob();
  const ann = overTheWire(await alice.announcement());
  await bob.learn('alice', ann);
  assert.deepEqual(await bob.learn('alice', ann), { outcome: ANNOUNCEMENT.SAME, settled: [] });
});

test('concurrent announcements of one sender learn only the first key', async () => {
  const { alice, bob } = await aliceAndBob();
  const mallory = await RoomSignatures.start();
  const [first, second] = await Promise.all([
    bob.learn('alice', overTheWire(await alice.announcement())),
    bob.learn('alice', overTheWire(await mallory.announcement())),
  ]);
  assert.equal(first.outcome, ANNOUNCEMENT.LEARNED);
  assert.equal(second.outcome, ANNOUNCEMENT.CONFLICT);
  assert.equal(await bob.check('alice', overTheWire(await alice.sign({ text: 'y' })), 'rec'), VERDICT.VERIFIED);
});

test('an announcement signed by another key is refused', async () => {
  const { bob } = await aliceAndBob();
  const alice = await generateSigningKeyPair();
  const mallory = await generateSigningKeyPair();
  const ann = await buildPayload({ text: '', type: 'pubkey', pubkey: alice.publicKeyB64 }, mallory.privateKey);
  assert.deepEqual(await bob.learn('alice', overTheWire(ann)), { outcome: ANNOUNCEMENT.INVALID, settled: [] });
  assert.equal(bob.peers.size, 0);
});

test('an unsigned announcement is refused: anyone could have sent it', async () => {
  const { bob } = await aliceAndBob();
  const alice = await generateSigningKeyPair();
  const ann = { text: '', type: 'pubkey', pubkey: alice.publicKeyB64 };
  assert.equal((await bob.learn('alice', ann)).outcome, ANNOUNCEMENT.INVALID);
  const signed = await buildPayload({ text: 'hi' }, alice.privateKey);
  assert.equal(await bob.check('alice', overTheWire(signed), 'rec'), VERDICT.UNKNOWN);
});

test('an announcement without a usable key is refused', async () => {
  const { bob } = await aliceAndBob();
  for (const pubkey of [undefined, 42, '', 'not base64url!', 'AAAA']) {
    const outcome = await bob.learn('alice', { text: '', type: 'pubkey', pubkey });
    assert.deepEqual(outcome, { outcome: ANNOUNCEMENT.INVALID, settled: [] }, String(pubkey));
  }
  assert.equal(bob.peers.size, 0);
});

test('keys are per sender: one member key does not verify another member', async () => {
  const { alice, bob } = await aliceAndBob();
  await bob.learn('alice', overTheWire(await alice.announcement()));
  const fromCarol = overTheWire(await alice.sign({ text: 'signed by alice, sent as carol' }));
  assert.equal(await bob.check('carol', fromCarol, 'rec'), VERDICT.UNKNOWN);
});

// ------------------------------------------------------------- binding

/** Alice and Bob in room R at epoch 0, Bob knowing Alice's key. */
async function boundPair(roomId = 'R') {
  const alice = await RoomSignatures.start({ roomId });
  const bob = await RoomSignatures.start({ roomId });
  await bob.learn('alice', overTheWire(await alice.announcement()));
  return { alice, bob };
}

test('a bound session signs room, epoch and a counter into every payload', async () => {
  const alice = await RoomSignatures.start({ roomId: 'R', epoch: 2 });
  const one = await alice.sign({ text: 'a' });
  const two = await alice.sign({ text: 'b' });
  assert.deepEqual([one.room, one.epoch, one.ctr], ['R', 2, 1]);
  assert.equal(two.ctr, 2);
  const ann = await alice.announcement();
  assert.equal(ann.room, 'R');
  assert.equal(ann.ctr, undefined);
});

test('a replayed message is detected, even though its signature is valid', async () => {
  const { alice, bob } = await boundPair();
  const m1 = overTheWire(await alice.sign({ text: 'pay 10' }));
  assert.equal(await bob.check('alice', m1, 'r1'), VERDICT.VERIFIED);
  assert.equal(await bob.check('alice', m1, 'r1 again'), VERDICT.REPLAYED);
});

test('a reordered message is detected', async () => {
  const { alice, bob } = await boundPair();
  const m1 = overTheWire(await alice.sign({ text: 'first' }));
  const m2 = overTheWire(await alice.sign({ text: 'second' }));
  assert.equal(await bob.check('alice', m2, 'r2'), VERDICT.VERIFIED);
  assert.equal(await bob.check('alice', m1, 'r1'), VERDICT.REORDERED);
  assert.equal(await bob.check('alice', m1, 'r1'), VERDICT.REPLAYED);
});

test('a message signed for another room fails', async () => {
  const alice = await RoomSignatures.start({ roomId: 'other' });
  const bob = await RoomSignatures.start({ roomId: 'R' });
  const ann = overTheWire(await alice.announcement());
  assert.equal((await bob.learn('alice', ann)).outcome, ANNOUNCEMENT.INVALID, 'an announcement for another room');
  const aliceInR = await RoomSignatures.start({ roomId: 'R' });
  await bob.learn('alice', overTheWire(await aliceInR.announcement()));
  const moved = overTheWire(await aliceInR.sign({ text: 'x' }));
  assert.equal(await bob.check('alice', { ...moved, room: 'other' }, 'r'), VERDICT.FAILED, 'room changed after signing');
});

test('the counter and the room cannot be changed without breaking the signature', async () => {
  const { alice, bob } = await boundPair();
  const m = overTheWire(await alice.sign({ text: 'x' }));
  assert.equal(await bob.check('alice', { ...m, ctr: 99 }, 'r'), VERDICT.FAILED);
  assert.equal(await bob.check('alice', { ...m, epoch: 5 }, 'r'), VERDICT.FAILED);
});

test('signed payloads without a counter (other Arthas clients) verify as before', async () => {
  const { bob } = await boundPair();
  const carol = await generateSigningKeyPair();
  const ann = await buildPayload({ text: '', type: 'pubkey', pubkey: carol.publicKeyB64 }, carol.privateKey);
  assert.equal((await bob.learn('carol', overTheWire(ann))).outcome, ANNOUNCEMENT.LEARNED);
  const legacy = overTheWire(await buildPayload({ text: 'hi' }, carol.privateKey));
  assert.equal(await bob.check('carol', legacy, 'r'), VERDICT.VERIFIED);
  assert.equal(await bob.check('carol', legacy, 'r'), VERDICT.VERIFIED);
});

test('a learned key keeps its fingerprint and its X25519 key', async () => {
  const { generateDhKeyPair } = await import('../../js/rekey.js');
  const dh = await generateDhKeyPair();
  const alice = await RoomSignatures.start({ roomId: 'R', dh });
  const bob = await RoomSignatures.start({ roomId: 'R' });
  await bob.learn('alice', overTheWire(await alice.announcement()));
  const peer = bob.peers.get('alice');
  assert.equal(peer.dh, dh.publicKeyB64);
  assert.match(peer.fp, /^[0-9a-f]{8}$/);
  assert.equal(peer.fp, await alice.ownFingerprint());
  assert.match(peer.ownerFp, /^[0-9a-f]{32}$/);
  assert.ok(peer.ownerFp.startsWith(peer.fp));
  assert.equal(peer.ownerFp, await alice.ownFingerprint(32));
});

test('a dropped message shows as a gap in its sender\'s counters', async () => {
  const { alice, bob } = await boundPair();
  const sent = [];
  for (const text of ['one', 'two', 'three', 'four', 'five']) sent.push(overTheWire(await alice.sign({ text })));
  assert.equal(await bob.check('alice', sent[0], 'r1'), VERDICT.VERIFIED);
  assert.deepEqual(bob.takeGapEvents(), [], 'the first counter is the baseline');
  // The relay drops two and three.
  assert.equal(await bob.check('alice', sent[3], 'r4'), VERDICT.VERIFIED);
  assert.deepEqual(bob.takeGapEvents(), [{ kind: 'gap', senderId: 'alice', from: 2, to: 3, count: 2 }]);
  assert.deepEqual(bob.takeGapEvents(), [], 'events are taken once');
  assert.equal(await bob.check('alice', sent[4], 'r5'), VERDICT.VERIFIED);
  assert.deepEqual(bob.takeGapEvents(), [], 'the next counter is no gap');
});

test('a missing message that arrives late fills its gap and is out of order', async () => {
  const { alice, bob } = await boundPair();
  const sent = [];
  for (const text of ['one', 'two', 'three']) sent.push(overTheWire(await alice.sign({ text })));
  await bob.check('alice', sent[0], 'r1');
  assert.equal(await bob.check('alice', sent[2], 'r3'), VERDICT.VERIFIED);
  assert.deepEqual(bob.takeGapEvents(), [{ kind: 'gap', senderId: 'alice', from: 2, to: 2, count: 1 }]);
  assert.equal(await bob.check('alice', sent[1], 'r2'), VERDICT.REORDERED);
  assert.deepEqual(bob.takeGapEvents(), [{ kind: 'filled', senderId: 'alice', ctr: 2 }]);
  // A replay of it fills nothing.
  assert.equal(await bob.check('alice', sent[1], 'r2 again'), VERDICT.REPLAYED);
  assert.deepEqual(bob.takeGapEvents(), []);
});

test('a member who joins late sees no gap for what was sent before', async () => {
  const alice = await RoomSignatures.start({ roomId: 'R' });
  for (let i = 0; i < 5; i++) await alice.sign({ text: `before ${i}` });
  const bob = await RoomSignatures.start({ roomId: 'R' });
  const sixth = overTheWire(await alice.sign({ text: 'six' }));
  // Bob gets the message before the key: it waits, and is settled with the key.
  assert.equal(await bob.check('alice', sixth, 'r6'), VERDICT.UNKNOWN);
  const { settled } = await bob.learn('alice', overTheWire(await alice.announcement()));
  assert.deepEqual(settled.map((x) => x.verdict), [VERDICT.VERIFIED]);
  assert.deepEqual(bob.takeGapEvents(), []);
  assert.equal(await bob.check('alice', overTheWire(await alice.sign({ text: 'seven' })), 'r7'), VERDICT.VERIFIED);
  assert.deepEqual(bob.takeGapEvents(), []);
});

test('gaps are per sender, and a huge jump keeps only the replay window of missing counters', async () => {
  const { alice, bob } = await boundPair();
  const carol = await RoomSignatures.start({ roomId: 'R' });
  await bob.learn('carol', overTheWire(await carol.announcement()));
  await bob.check('alice', overTheWire(await alice.sign({ text: 'a1' })), 'a1');
  await bob.check('carol', overTheWire(await carol.sign({ text: 'c1' })), 'c1');
  await carol.sign({ text: 'c2 dropped' });
  await bob.check('alice', overTheWire(await alice.sign({ text: 'a2' })), 'a2');
  await bob.check('carol', overTheWire(await carol.sign({ text: 'c3' })), 'c3');
  assert.deepEqual(bob.takeGapEvents(), [{ kind: 'gap', senderId: 'carol', from: 2, to: 2, count: 1 }]);
  const jump = MAX_MISSING_COUNTERS * 3;
  for (let i = 0; i < jump; i++) await alice.sign({ text: 'dropped' });
  await bob.check('alice', overTheWire(await alice.sign({ text: 'after the jump' })), 'aj');
  assert.deepEqual(bob.takeGapEvents(), [{ kind: 'gap', senderId: 'alice', from: 3, to: 2 + jump, count: jump }]);
  assert.ok(bob.peers.get('alice').missing.size <= MAX_MISSING_COUNTERS);
});

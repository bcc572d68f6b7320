// The key schedule of a rotation (docs/SECURITY.md §5.3) with fixed vectors:
// X25519 from RFC 7748 §6.1, and HKDF outputs computed independently (Python
// hmac/hashlib, RFC 5869) for the join password and the wrap key.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  joinPassword, joinPasswordOf, dhKeyPairFromPrivate, sharedSecret, wrapKeyBytes, rekeyInfo,
  sealRekey, openRekey, generateDhKeyPair, newOwnerSecret, fingerprint,
} from '../../js/rekey.js';
import { sha256Hex } from '../../js/crypto.js';

const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
const b64 = (bytes) => Buffer.from(bytes).toString('base64url');

const ALICE_PRIVATE = hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUBLIC = hex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const BOB_PRIVATE = hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUBLIC = hex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
const ROOM = 'V1StGXR8_Z5jdHi6B-myT';

test('the join password is HKDF-SHA256(key, salt = room id, info = "arthas/v1/join")', async () => {
  const key = new Uint8Array(32).fill(7);
  assert.equal(await joinPassword(key, ROOM), '5934e25a6a3f2e83361e4b1da8b35d8f991cf057cb1aa7899b3121e5b025211b');
  assert.equal(await joinPasswordOf(b64(key), ROOM), '5934e25a6a3f2e83361e4b1da8b35d8f991cf057cb1aa7899b3121e5b025211b');
  // Another room or another key: another password (the old share code stops joining).
  assert.notEqual(await joinPassword(key, 'another-room'), await joinPassword(key, ROOM));
  assert.notEqual(await joinPassword(new Uint8Array(32).fill(8), ROOM), await joinPassword(key, ROOM));
  assert.match(await joinPassword(key, ROOM), /^[0-9a-f]{64}$/);
});

test('X25519 agrees on the RFC 7748 shared secret from both sides', async () => {
  const alice = await dhKeyPairFromPrivate(ALICE_PRIVATE, ALICE_PUBLIC);
  const bob = await dhKeyPairFromPrivate(BOB_PRIVATE, BOB_PUBLIC);
  assert.equal(Buffer.from(await sharedSecret(alice.privateKey, b64(BOB_PUBLIC))).toString('hex'), SHARED);
  assert.equal(Buffer.from(await sharedSecret(bob.privateKey, b64(ALICE_PUBLIC))).toString('hex'), SHARED);
});

test('the wrap key is HKDF-SHA256(shared, salt = SHA-256("arthas/v1/rekey"), info)', async () => {
  const info = rekeyInfo(ROOM, 1, 'OWNER', 'MEMBER');
  assert.equal(info, `arthas/v1/rekey|${ROOM}|1|OWNER|MEMBER`);
  const key = await wrapKeyBytes(hex(SHARED), info);
  assert.equal(Buffer.from(key).toString('hex'), '809c8564e590d6ab3309ea70208de885ef710ce741fb0f5db392981a48767d94');
});

test('a sealed rekey opens for its member, room and epoch only', async () => {
  const owner = await dhKeyPairFromPrivate(ALICE_PRIVATE, ALICE_PUBLIC);
  const member = await dhKeyPairFromPrivate(BOB_PRIVATE, BOB_PUBLIC);
  const payload = { type: 'rekey', room: ROOM, epoch: 1, key: b64(new Uint8Array(32).fill(9)) };
  const iv = new Uint8Array(12).fill(1);
  const sealed = await sealRekey({ ownerDh: owner, memberDhB64: member.publicKeyB64, roomId: ROOM, epoch: 1, payload, iv });
  // Fixed keys and IV: a fixed ciphertext (AES-256-GCM, the info string as additional data).
  assert.equal(sealed.iv, 'AQEBAQEBAQEBAQEB');
  // Computed independently with Python's cryptography (AESGCM) over the HKDF above.
  assert.equal(sealed.ciphertext, 'JyuLikED-5mpuXIgYIDFVTLDAogNa-TePRNTZnrszZCfL15aHSc9vSnbfCckDoWw0w8kZ1-Q3TDJ8kSXNbdUsEgsk4yanLh0JjzDjLYLM8gR73sYsoHtGiuJm98h5mqY_QVvUgCZ4S3qEw0W6neHYvOWPgNn3b42h3mGc3g');
  const again = await sealRekey({ ownerDh: owner, memberDhB64: member.publicKeyB64, roomId: ROOM, epoch: 1, payload, iv });
  assert.equal(again.ciphertext, sealed.ciphertext);
  const open = (over) => openRekey({ myDh: member, ownerDhB64: owner.publicKeyB64, roomId: ROOM, epoch: 1, ...sealed, ...over });
  assert.deepEqual(await open({}), payload);
  await assert.rejects(open({ epoch: 2 }), 'another epoch');
  await assert.rejects(open({ roomId: 'another-room' }), 'another room');
  const stranger = await generateDhKeyPair();
  await assert.rejects(open({ myDh: stranger }), 'another member');
  await assert.rejects(open({ ownerDhB64: stranger.publicKeyB64 }), 'another owner');
  const flipped = Buffer.from(sealed.ciphertext, 'base64url');
  flipped[0] ^= 1;
  await assert.rejects(open({ ciphertext: flipped.toString('base64url') }), 'tampered');
});

test('an owner secret is 64 hex characters and the room keeps its SHA-256', async () => {
  const { secret, hash } = await newOwnerSecret();
  assert.match(secret, /^[0-9a-f]{64}$/);
  assert.equal(hash, await sha256Hex(secret));
  assert.notEqual((await newOwnerSecret()).secret, secret);
});

test('a fingerprint is 8 hex digits of the SHA-256 of the key', async () => {
  assert.equal(await fingerprint(b64(ALICE_PUBLIC)), Buffer.from(await crypto.subtle.digest('SHA-256', ALICE_PUBLIC)).toString('hex').slice(0, 8));
});

test('a hand-over key names the heir for everyone and carries the new secret for the heir only', async () => {
  const { RoomSignatures } = await import('../../js/signatures.js');
  const ownerDh = await generateDhKeyPair();
  const heirDh = await generateDhKeyPair();
  const otherDh = await generateDhKeyPair();
  const owner = await RoomSignatures.start({ roomId: 'R', dh: ownerDh });
  const heir = await RoomSignatures.start({ roomId: 'R', dh: heirDh });
  const other = await RoomSignatures.start({ roomId: 'R', dh: otherDh });
  for (const m of [heir, other]) await m.learn('owner', JSON.parse(JSON.stringify(await owner.announcement())));
  const heirFp = await heir.ownFingerprint(32);
  const next = await newOwnerSecret();
  const content = { text: '', type: 'rekey', epoch: 3, key: 'k'.repeat(43), owner: heirFp };
  const forHeir = await owner.signed({ ...content, secret: next.secret, autoRotate: true });
  const forOther = await owner.signed(content);
  const sealedHeir = await sealRekey({ ownerDh, memberDhB64: heirDh.publicKeyB64, roomId: 'R', epoch: 3, payload: forHeir });
  const sealedOther = await sealRekey({ ownerDh, memberDhB64: otherDh.publicKeyB64, roomId: 'R', epoch: 3, payload: forOther });
  const openedHeir = await openRekey({ myDh: heirDh, ownerDhB64: ownerDh.publicKeyB64, roomId: 'R', epoch: 3, ...sealedHeir });
  assert.equal(openedHeir.secret, next.secret);
  assert.equal(openedHeir.owner, heirFp);
  assert.equal(await heir.verifiedFrom('owner', openedHeir), true);
  const openedOther = await openRekey({ myDh: otherDh, ownerDhB64: ownerDh.publicKeyB64, roomId: 'R', epoch: 3, ...sealedOther });
  assert.equal(openedOther.secret, undefined, 'the others never get the secret');
  assert.equal(await other.verifiedFrom('owner', openedOther), true);
  // Another member cannot open the heir's, and naming another heir breaks the signature.
  await assert.rejects(openRekey({ myDh: otherDh, ownerDhB64: ownerDh.publicKeyB64, roomId: 'R', epoch: 3, ...sealedHeir }));
  assert.equal(await other.verifiedFrom('owner', { ...openedOther, owner: await other.ownFingerprint(32) }), false);
});

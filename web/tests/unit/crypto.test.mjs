import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  generateRoomKey, exportRoomKey, importRoomKey, encryptText, decryptText, encryptBytes, decryptBytes,
  sha256Hex, hashPassword, canonicalJson, signableBytes, generateSigningKeyPair, importVerifyKey,
  verifyPayload, buildPayload, parsePayload, signBytes,
} from '../../js/crypto.js';
import { fromBase64Url, toBase64Url, toHex } from '../../js/encoding.js';

// RFC 8032 §7.1 test 1
const RFC_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const RFC_PUB = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const RFC_SIG_EMPTY = 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';

async function rfcPrivateKey() {
  const pkcs8 = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(RFC_SEED, 'hex')]);
  return crypto.subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
}

test('room key: AES-256-GCM, raw export is 43 base64url chars', async () => {
  const key = await generateRoomKey();
  assert.equal(key.algorithm.name, 'AES-GCM');
  assert.equal(key.algorithm.length, 256);
  const enc = await exportRoomKey(key);
  assert.match(enc, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(fromBase64Url(enc).length, 32);
  const imported = await importRoomKey(enc);
  assert.equal(imported.extractable, false);
  await assert.rejects(importRoomKey(enc.slice(1)));
  await assert.rejects(importRoomKey(`${enc.slice(0, 42)}+`));
});

test('text encryption: fresh 12-byte IV each time, tag appended, round trip', async () => {
  const key = await generateRoomKey();
  const a = await encryptText(key, 'hello');
  const b = await encryptText(key, 'hello');
  assert.equal(fromBase64Url(a.iv).length, 12);
  assert.notEqual(a.iv, b.iv);
  assert.notEqual(a.ciphertext, b.ciphertext);
  assert.equal(fromBase64Url(a.ciphertext).length, 5 + 16);
  assert.equal(await decryptText(key, a.iv, a.ciphertext), 'hello');
  // tampering or the wrong key fails
  const ct = fromBase64Url(a.ciphertext);
  ct[0] ^= 1;
  await assert.rejects(decryptText(key, a.iv, toBase64Url(ct)));
  await assert.rejects(decryptText(await generateRoomKey(), a.iv, a.ciphertext));
});

test('interop: decrypt a message encrypted with a known key and IV', async () => {
  // What any other Arthas client produces: AES-256-GCM(key, iv, JSON), base64url.
  const rawKey = new Uint8Array(32).map((_, i) => i);
  const iv = new Uint8Array(12).map((_, i) => 100 + i);
  const k = await crypto.subtle.importKey('raw', rawKey, 'AES-GCM', false, ['encrypt']);
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, k, new TextEncoder().encode('{"text":"Hi"}')));
  const key = await importRoomKey(toBase64Url(rawKey));
  assert.equal(toBase64Url(rawKey), 'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8');
  assert.equal(await decryptText(key, toBase64Url(iv), toBase64Url(ct)), '{"text":"Hi"}');
});

test('byte encryption for file chunks', async () => {
  const key = await generateRoomKey();
  const data = crypto.getRandomValues(new Uint8Array(65536));
  const { iv, ciphertext } = await encryptBytes(key, data);
  assert.equal(iv.length, 12);
  assert.equal(ciphertext.length, 65536 + 16);
  assert.deepEqual(await decryptBytes(key, iv, ciphertext), data);
  await assert.rejects(decryptBytes(key, iv.slice(0, 11), ciphertext));
});

test('password hash: SHA-256 lowercase hex, empty stays empty', async () => {
  assert.equal(await sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(await hashPassword(''), '');
  const h = await hashPassword('correct horse');
  assert.match(h, /^[0-9a-f]{64}$/);
  assert.equal(await hashPassword('pässwörd'), await sha256Hex('pässwörd'));
});

test('canonical JSON vectors (shared with the other Arthas clients)', () => {
  const v = [
    [{ text: 'Hello' }, '{"text":"Hello"}', '7b2274657874223a2248656c6c6f227d'],
    [
      { reply: { preview: 'Hi', senderName: 'A', stableId: 'x:1' }, text: 'World' },
      '{"reply":{"preview":"Hi","senderName":"A","stableId":"x:1"},"text":"World"}',
      '7b227265706c79223a7b2270726576696577223a224869222c2273656e6465724e616d65223a2241222c22737461626c654964223a22783a31227d2c2274657874223a22576f726c64227d',
    ],
    [
      { pubkey: 'dGVzdC1wdWJsaWMta2V5LWJhc2U2NHVybA', text: '', type: 'pubkey' },
      '{"pubkey":"dGVzdC1wdWJsaWMta2V5LWJhc2U2NHVybA","text":"","type":"pubkey"}',
      '7b227075626b6579223a226447567a6443317764574a7361574d74613256354c574a68633255324e4856796241222c2274657874223a22222c2274797065223a227075626b6579227d',
    ],
  ];
  for (const [input, json, hex] of v) {
    assert.equal(canonicalJson(input), json);
    assert.equal(toHex(signableBytes({ ...input, sig: 'ignored' })), hex);
  }
});

test('canonical JSON: recursive sort, arrays kept, escapes, undefined skipped', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null } }), '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1}');
  assert.equal(canonicalJson({ text: 'a"b\\c\n\u0001é🎉' }), '{"text":"a\\"b\\\\c\\n\\u0001é🎉"}');
  assert.equal(canonicalJson({ text: 'x', reply: undefined }), '{"text":"x"}');
  // UTF-16 code unit order, as Array.prototype.sort: uppercase before lowercase
  assert.equal(canonicalJson({ a: 1, B: 2, _: 3 }), '{"B":2,"_":3,"a":1}');
  assert.equal(canonicalJson([undefined, 1]), '[null,1]');
  assert.equal(canonicalJson(true), 'true');
  assert.equal(canonicalJson(1.5), '1.5');
});

test('Ed25519 RFC 8032 vector through WebCrypto', async () => {
  const priv = await rfcPrivateKey();
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, priv, new Uint8Array());
  assert.equal(Buffer.from(sig).toString('hex'), RFC_SIG_EMPTY);
  const pub = await importVerifyKey(toBase64Url(Buffer.from(RFC_PUB, 'hex')));
  assert.ok(await crypto.subtle.verify({ name: 'Ed25519' }, pub, sig, new Uint8Array()));
});

test('payload signature vector: canonical bytes signed with the RFC key', async () => {
  const priv = await rfcPrivateKey();
  const payload = { text: 'Hello', reply: { stableId: '3f2a9c1b:1735000000000', senderName: 'Alice', preview: 'Hi' } };
  const signed = await buildPayload(payload, priv);
  assert.equal(signed.sig, 'DeXe837di5--k55jCb4hhCtmJQFRnl_coiIZtdRYt4ANZlNghqxV1Cc68OR6CrVGqnikz9zMynN2JIgjvN65Dw');
  const pub = await importVerifyKey(toBase64Url(Buffer.from(RFC_PUB, 'hex')));
  // key order on the wire does not matter
  const reordered = JSON.parse(JSON.stringify({ sig: signed.sig, reply: { preview: 'Hi', senderName: 'Alice', stableId: '3f2a9c1b:1735000000000' }, text: 'Hello' }));
  assert.ok(await verifyPayload(pub, reordered));
  assert.equal(await verifyPayload(pub, { ...reordered, text: 'Hello!' }), false);
  assert.equal(await verifyPayload(pub, { ...reordered, sig: 'AAAA' }), false);
  assert.equal(await verifyPayload(pub, { text: 'Hello' }), false);
});

test('session key pair, pubkey announcement and verification', async () => {
  const pair = await generateSigningKeyPair();
  assert.ok(pair);
  assert.equal(fromBase64Url(pair.publicKeyB64).length, 32);
  const ann = await buildPayload({ text: '', type: 'pubkey', pubkey: pair.publicKeyB64 }, pair.privateKey);
  assert.deepEqual(Object.keys(ann).sort(), ['pubkey', 'sig', 'text', 'type']);
  const parsed = parsePayload(JSON.stringify(ann));
  const pub = await importVerifyKey(parsed.pubkey);
  assert.ok(await verifyPayload(pub, parsed));
  const other = await generateSigningKeyPair();
  const forged = await buildPayload({ text: 'hi' }, other.privateKey);
  assert.equal(await verifyPayload(pub, forged), false);
  const unsigned = await buildPayload({ text: 'hi' }, null);
  assert.deepEqual(unsigned, { text: 'hi' });
  assert.equal((await signBytes(pair.privateKey, new Uint8Array([1]))).length, 86);
});

test('parsePayload: JSON payloads and legacy plain text', () => {
  assert.deepEqual(parsePayload('{"text":"hi","sig":"x"}'), { text: 'hi', sig: 'x' });
  assert.deepEqual(parsePayload('just text'), { text: 'just text' });
  assert.deepEqual(parsePayload('{"no":"text"}'), { text: '{"no":"text"}' });
  assert.deepEqual(parsePayload('[1]'), { text: '[1]' });
  assert.deepEqual(parsePayload('null'), { text: 'null' });
});

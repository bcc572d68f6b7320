import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FileTransfers, sanitizeFileName, totalChunksFor } from '../../js/files.js';
import { generateRoomKey } from '../../js/crypto.js';
import { C, S } from '../../js/protocol.js';
import { encode, decode } from '../../js/msgpack.js';

test('file names are sanitised', () => {
  assert.equal(sanitizeFileName('../../etc/passwd'), '_.._etc_passwd');
  assert.equal(sanitizeFileName('a\u0000b<c>.txt'), 'a_b_c_.txt');
  assert.equal(sanitizeFileName(''), 'file');
  assert.equal(sanitizeFileName(undefined), 'file');
  assert.equal(sanitizeFileName('...hidden'), 'hidden');
  const long = `${'n'.repeat(300)}.jpeg`;
  assert.equal(sanitizeFileName(long).length, 120);
  assert.ok(sanitizeFileName(long).endsWith('.jpeg'));
});

test('chunk counts', () => {
  assert.equal(totalChunksFor(1), 1);
  assert.equal(totalChunksFor(65536), 1);
  assert.equal(totalChunksFor(65537), 2);
  assert.equal(totalChunksFor(5 * 1024 * 1024), 80);
});

/** Two FileTransfers wired through a fake relay that msgpack-encodes every frame. */
function loopback(key) {
  const frames = [];
  let receiver;
  const relayed = [];
  const sender = new FileTransfers({
    send: (type, data) => {
      const wire = decode(encode({ type, data }));
      frames.push(wire);
      relayed.push(wire);
      return true;
    },
    bufferedAmount: () => 0,
    key: () => key,
    receivers: () => 1,
    onUpdate: () => {},
  });
  const acks = [];
  const updates = [];
  receiver = new FileTransfers({
    send: (type, data) => { acks.push({ type, data }); return true; },
    bufferedAmount: () => 0,
    key: () => key,
    receivers: () => 1,
    onUpdate: (t) => updates.push(t.status),
  });
  async function deliver() {
    while (relayed.length) {
      const { type, data } = relayed.shift();
      const d = { ...data, senderId: 'aaaa1111', senderName: 'Alice', t: 1 };
      if (type === C.FILE_META) await receiver.onMeta(d);
      else if (type === C.FILE_CHUNK) await receiver.onChunk(d);
      else if (type === C.FILE_COMPLETE) receiver.onComplete(d);
      else if (type === C.FILE_CANCEL) receiver.onCancel(d);
    }
  }
  return { sender, receiver, frames, acks, updates, deliver };
}

async function waitFor(pred) {
  while (!pred()) await new Promise((r) => setImmediate(r));
}

test('a 200 KB file travels encrypted in 64 KiB chunks and is acked', async () => {
  const key = await generateRoomKey();
  const { sender, receiver, frames, acks, deliver } = loopback(key);
  const bytes = new Uint8Array(200 * 1024);
  for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  const t = sender.send(new File([bytes], 'photo.bin', { type: 'application/octet-stream' }));
  await waitFor(() => t.status === 'sent' || t.status === 'failed');
  assert.equal(t.status, 'sent');
  const types = frames.map((f) => f.type);
  assert.deepEqual(types, [C.FILE_META, C.FILE_CHUNK, C.FILE_CHUNK, C.FILE_CHUNK, C.FILE_CHUNK, C.FILE_COMPLETE]);
  const meta = frames[0].data;
  assert.equal(typeof meta.iv, 'string');
  assert.ok(meta.ciphertext instanceof Uint8Array);
  for (const f of frames.slice(1, 5)) {
    assert.ok(f.data.iv instanceof Uint8Array && f.data.iv.length === 12);
    assert.ok(f.data.data instanceof Uint8Array);
    assert.equal(f.data.transferId, t.transferId);
  }
  assert.deepEqual(frames.slice(1, 5).map((f) => f.data.index), [0, 1, 2, 3]);
  assert.equal(frames[1].data.data.length, 65536 + 16);
  assert.equal(frames[4].data.data.length, 200 * 1024 - 3 * 65536 + 16);
  // the file name never appears in clear on the wire
  const wire = Buffer.concat(frames.map((f) => Buffer.from(encode(f))));
  assert.equal(wire.indexOf('photo.bin'), -1);
  await deliver();
  const [rt] = receiver.incoming.values();
  assert.equal(rt.status, 'received');
  assert.equal(rt.name, 'photo.bin');
  assert.deepEqual(acks, [{ type: C.FILE_ACK, data: { transferId: t.transferId } }]);
  // reassembled content is identical
  const res = await fetch(rt.url);
  assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
  sender.onAck({ receiverId: 'bbbb2222', transferId: t.transferId });
  assert.equal(t.acks.size, 1);
  receiver.clear();
});

test('undecryptable meta, oversize, empty and cancelled transfers', async () => {
  const key = await generateRoomKey();
  {
    const { receiver } = loopback(key);
    await receiver.onMeta({ senderId: 'x', transferId: 'bogus', iv: 'AAAAAAAAAAAAAAAA', ciphertext: new Uint8Array(20) });
    assert.equal(receiver.incoming.size, 0, 'undecryptable meta is ignored');
  }
  {
    const { sender } = loopback(key);
    assert.throws(() => sender.send(new File([new Uint8Array(5 * 1024 * 1024 + 1)], 'big.bin')), /5 MB/);
    assert.throws(() => sender.send(new File([], 'empty.bin')), /empty/);
  }
  {
    const { sender, receiver, deliver } = loopback(key);
    const t = sender.send(new File([new Uint8Array(300000)], 'c.bin'));
    sender.cancel(t.transferId);
    await waitFor(() => sender.active === null);
    assert.equal(t.status, 'cancelled');
    await deliver();
    for (const rt of receiver.incoming.values()) assert.notEqual(rt.status, 'received');
  }
});

test('a receiver rejects chunks with a bad index, size or tag', async () => {
  const key = await generateRoomKey();
  const { sender, receiver, frames } = loopback(key);
  const t = sender.send(new File([new Uint8Array(70000).fill(3)], 'd.bin'));
  await waitFor(() => t.status === 'sent');
  const d = (f) => ({ ...f.data, senderId: 's1', senderName: 'S', t: 1 });
  await receiver.onMeta(d(frames[0]));
  const [rt] = receiver.incoming.values();
  await receiver.onChunk({ ...d(frames[1]), index: 7 });
  await receiver.onChunk({ ...d(frames[1]), index: -1 });
  assert.equal(rt.done, 0);
  await receiver.onChunk(d(frames[1]));
  await receiver.onChunk(d(frames[1])); // duplicate ignored
  assert.equal(rt.done, 1);
  receiver.onComplete(d(frames[3]));
  assert.equal(rt.status, 'failed', 'complete before all chunks arrived');
  const tampered = d(frames[2]);
  tampered.data = tampered.data.slice();
  tampered.data[0] ^= 1;
  const { receiver: r2 } = loopback(key);
  await r2.onMeta(d(frames[0]));
  await r2.onChunk(tampered);
  assert.equal([...r2.incoming.values()][0].status, 'failed');
  r2.clear();
  receiver.clear();
  void S;
});

test('a chunk the relay moves to another index or transfer is refused (its IV is bound)', async () => {
  const key = await generateRoomKey();
  const { sender, receiver, frames } = loopback(key);
  const t = sender.send(new File([new Uint8Array(140000).fill(5)], 'e.bin'));
  await waitFor(() => t.status === 'sent');
  const d = (f) => ({ ...f.data, senderId: 's1', senderName: 'S', t: 1 });
  await receiver.onMeta(d(frames[0]));
  const [rt] = receiver.incoming.values();
  assert.match(rt.ivSeed, /^[A-Za-z0-9_-]{22}$/);
  // chunks 0 and 1 are full 64 KiB chunks: swapping them keeps sizes and tags valid
  await receiver.onChunk({ ...d(frames[2]), index: 0 });
  assert.equal(rt.status, 'failed');
  assert.match(rt.error, /moved/);
  receiver.clear();
  // the IVs follow from the seed: chunk i of transfer x
  const { chunkIv } = await import('../../js/files.js');
  const iv = await chunkIv('AAAAAAAAAAAAAAAAAAAAAA', 'x', 1);
  assert.equal(Buffer.from(iv).toString('hex'), (await import('node:crypto')).createHash('sha256').update('arthas/v1/chunk|AAAAAAAAAAAAAAAAAAAAAA|x|1').digest('hex').slice(0, 24));
});

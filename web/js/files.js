// Encrypted file transfer (protocol §6): up to 5 MB in 64 KiB chunks.
//   0x08 meta:     {transferId, iv: base64url str, ciphertext: bin}  (encrypted
//                  JSON {transferId, fileName, fileSize, mimeType, totalChunks})
//   0x09 chunk:    {transferId, index, iv: bin(12), data: bin (chunk + tag)}
//                  The meta carries `ivSeed` (16 random bytes, base64url) and
//                  chunk i's IV is chunkIv(ivSeed, transferId, i): a receiver
//                  that knows the seed refuses a chunk the relay moved to
//                  another index or transfer (its IV no longer matches), and
//                  one that does not (another Arthas client) decrypts as before.
//   0x0A complete, 0x0B cancel: {transferId}
//   0x0C ack:      {transferId} sent by each receiver once the file is whole.
// One active outgoing transfer at a time (the server allows one); others wait.

import { C, LIMITS } from './protocol.js';
import { encryptBytes, decryptBytes } from './crypto.js';

import { toBase64Url, fromBase64Url, randomId, utf8 } from './encoding.js';

/**
 * The IV of chunk `index` of a transfer: the first 12 bytes of
 * SHA-256("arthas/v1/chunk|" seed "|" transferId "|" index). Unique per
 * chunk as long as the seed is random per transfer.
 */
export async function chunkIv(seed, transferId, index) {
  const digest = await crypto.subtle.digest('SHA-256', utf8.encode(`arthas/v1/chunk|${seed}|${transferId}|${index}`));
  return new Uint8Array(digest).slice(0, 12);
}

const PREVIEW_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
const HIGH_WATER = 512 * 1024;

/** A safe display/download name: no paths, no control chars, bounded. */
export function sanitizeFileName(name) {
  let n = typeof name === 'string' ? name : '';
  n = n.replace(/[\u0000-\u001f\u007f<>:"/\\|?*]/g, '_').replace(/^[.\s]+/, '').trim();
  if (n.length > 120) {
    const dot = n.lastIndexOf('.');
    const ext = dot > 0 && n.length - dot <= 10 ? n.slice(dot) : '';
    n = n.slice(0, 120 - ext.length) + ext;
  }
  return n || 'file';
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(2)} MB`;
}

export function totalChunksFor(size) {
  return Math.max(1, Math.ceil(size / LIMITS.CHUNK_BYTES));
}

function expectedChunkLength(t, index) {
  if (index < t.totalChunks - 1) return LIMITS.CHUNK_BYTES;
  return t.size - LIMITS.CHUNK_BYTES * (t.totalChunks - 1);
}

export class FileTransfers {
  /**
   * @param {object} io
   *   send(type, data) -> bool, bufferedAmount() -> number, key() -> CryptoKey,
   *   onUpdate(transfer), receivers() -> number of other members
   */
  constructor(io) {
    this.io = io;
    this.outgoing = new Map();
    this.incoming = new Map();
    this.queue = [];
    this.active = null;
  }

  // ---------------------------------------------------------- sending

  /** Validate and queue a File; returns the transfer record. */
  send(file) {
    if (!file || file.size <= 0) throw new Error('The file is empty.');
    if (file.size > LIMITS.MAX_FILE_BYTES) throw new Error('Files can be at most 5 MB.');
    const t = {
      direction: 'send',
      transferId: randomId(21),
      name: sanitizeFileName(file.name),
      size: file.size,
      mime: file.type || 'application/octet-stream',
      totalChunks: totalChunksFor(file.size),
      done: 0,
      status: 'queued',
      acks: new Set(),
      receivers: this.io.receivers(),
      file,
      previewUrl: null,
    };
    if (PREVIEW_TYPES.has(t.mime)) t.previewUrl = URL.createObjectURL(file.slice(0, file.size, t.mime));
    this.outgoing.set(t.transferId, t);
    this.queue.push(t);
    this.io.onUpdate(t);
    this.pump();
    return t;
  }

  pump() {
    if (this.active || !this.queue.length) return;
    const t = this.queue.shift();
    this.active = t;
    this.run(t)
      .catch((err) => {
        if (t.status === 'sending' || t.status === 'queued') {
          t.status = 'failed';
          t.error = err && err.message ? err.message : String(err);
        }
      })
      .finally(() => {
        t.file = null;
        this.active = null;
        this.io.onUpdate(t);
        this.pump();
      });
  }

  async waitForBuffer() {
    // Back-pressure on the socket: let the browser drain its send buffer.
    while (this.io.bufferedAmount() > HIGH_WATER) {
      await new Promise((r) => setTimeout(r, 15));
    }
  }

  async run(t) {
    if (t.status === 'cancelled') return;
    t.status = 'sending';
    t.receivers = this.io.receivers();
    this.io.onUpdate(t);
    const key = this.io.key();
    const meta = {
      transferId: t.transferId,
      fileName: t.name,
      fileSize: t.size,
      mimeType: t.mime,
      totalChunks: t.totalChunks,
      ivSeed: toBase64Url(crypto.getRandomValues(new Uint8Array(16))),
    };
    const encMeta = await encryptBytes(key, utf8.encode(JSON.stringify(meta)));
    if (t.status === 'cancelled') return;
    if (!this.io.send(C.FILE_META, { transferId: t.transferId, iv: toBase64Url(encMeta.iv), ciphertext: encMeta.ciphertext })) {
      throw new Error('Not connected.');
    }
    t.metaSent = true;
    for (let index = 0; index < t.totalChunks; index++) {
      if (t.status === 'cancelled') return;
      await this.waitForBuffer();
      const start = index * LIMITS.CHUNK_BYTES;
      const plain = new Uint8Array(await t.file.slice(start, Math.min(t.size, start + LIMITS.CHUNK_BYTES)).arrayBuffer());
      const enc = await encryptBytes(key, plain, await chunkIv(meta.ivSeed, t.transferId, index));
      if (t.status === 'cancelled') return;
      if (!this.io.send(C.FILE_CHUNK, { transferId: t.transferId, index, iv: enc.iv, data: enc.ciphertext })) {
        throw new Error('Connection lost during the transfer.');
      }
      t.done = index + 1;
      this.io.onUpdate(t);
    }
    if (!this.io.send(C.FILE_COMPLETE, { transferId: t.transferId })) throw new Error('Connection lost during the transfer.');
    t.status = 'sent';
  }

  cancel(transferId) {
    const t = this.outgoing.get(transferId);
    if (!t || (t.status !== 'sending' && t.status !== 'queued')) return;
    t.status = 'cancelled';
    this.queue = this.queue.filter((q) => q !== t);
    // The server knows the transfer only once its meta went out.
    if (t.metaSent) this.io.send(C.FILE_CANCEL, { transferId });
    this.io.onUpdate(t);
  }

  onAck({ receiverId, transferId }) {
    const t = this.outgoing.get(transferId);
    if (!t || typeof receiverId !== 'string') return;
    t.acks.add(receiverId);
    this.io.onUpdate(t);
  }

  // ---------------------------------------------------------- receiving

  incomingKey(senderId, transferId) {
    return `${senderId}\u0000${transferId}`;
  }

  touch(t) {
    clearTimeout(t.timer);
    t.timer = setTimeout(() => {
      if (t.status === 'receiving') {
        t.status = 'failed';
        t.error = 'The transfer timed out.';
        t.chunks = null;
        this.io.onUpdate(t);
      }
    }, LIMITS.FILE_TIMEOUT_MS);
  }

  async onMeta({ senderId, senderName, transferId, iv, ciphertext, t: time }) {
    if (typeof senderId !== 'string' || typeof transferId !== 'string' || !transferId) return null;
    if (typeof iv !== 'string' || !(ciphertext instanceof Uint8Array)) return null;
    const k = this.incomingKey(senderId, transferId);
    if (this.incoming.has(k)) return null;
    let meta;
    try {
      const pt = await decryptBytes(this.io.key(), fromBase64Url(iv), ciphertext);
      meta = JSON.parse(utf8.decode(pt));
    } catch {
      return null;
    }
    const size = meta && meta.fileSize;
    if (!Number.isSafeInteger(size) || size <= 0 || size > LIMITS.MAX_FILE_BYTES) return null;
    if (meta.totalChunks !== totalChunksFor(size)) return null;
    if (meta.transferId !== undefined && meta.transferId !== transferId) return null;
    const mime = typeof meta.mimeType === 'string' && meta.mimeType.length <= 255 ? meta.mimeType : 'application/octet-stream';
    const t = {
      direction: 'receive',
      transferId,
      senderId,
      senderName: typeof senderName === 'string' ? senderName : '',
      time: typeof time === 'number' ? time : Date.now(),
      name: sanitizeFileName(meta.fileName),
      size,
      mime,
      totalChunks: meta.totalChunks,
      ivSeed: typeof meta.ivSeed === 'string' && meta.ivSeed.length === 22 ? meta.ivSeed : null,
      chunks: new Array(meta.totalChunks),
      done: 0,
      status: 'receiving',
      url: null,
      previewUrl: null,
      timer: null,
    };
    this.incoming.set(k, t);
    this.touch(t);
    this.io.onUpdate(t);
    return t;
  }

  async onChunk({ senderId, transferId, index, iv, data }) {
    const t = this.incoming.get(this.incomingKey(senderId, transferId));
    if (!t || t.status !== 'receiving') return;
    if (!Number.isSafeInteger(index) || index < 0 || index >= t.totalChunks || t.chunks[index]) return;
    if (!(iv instanceof Uint8Array) || !(data instanceof Uint8Array)) return;
    if (t.ivSeed) {
      const want = await chunkIv(t.ivSeed, transferId, index);
      if (iv.length !== want.length || !want.every((b, i) => b === iv[i])) {
        this.fail(t, 'A chunk was moved to another place by the server: the file was refused.');
        return;
      }
    }
    let plain;
    try {
      plain = await decryptBytes(this.io.key(), iv, data);
    } catch {
      this.fail(t, 'A chunk failed to decrypt.');
      return;
    }
    if (t.status !== 'receiving') return;
    if (plain.length !== expectedChunkLength(t, index)) {
      this.fail(t, 'A chunk had the wrong size.');
      return;
    }
    t.chunks[index] = plain;
    t.done += 1;
    this.touch(t);
    this.io.onUpdate(t);
  }

  onComplete({ senderId, transferId }) {
    const t = this.incoming.get(this.incomingKey(senderId, transferId));
    if (!t || t.status !== 'receiving') return;
    clearTimeout(t.timer);
    if (t.done !== t.totalChunks) {
      this.fail(t, 'The file arrived incomplete.');
      return;
    }
    // Download as an opaque octet stream (never rendered as a document);
    // preview only well-known raster image types.
    t.url = URL.createObjectURL(new Blob(t.chunks, { type: 'application/octet-stream' }));
    if (PREVIEW_TYPES.has(t.mime)) t.previewUrl = URL.createObjectURL(new Blob(t.chunks, { type: t.mime }));
    t.chunks = null;
    t.status = 'received';
    this.io.send(C.FILE_ACK, { transferId });
    this.io.onUpdate(t);
  }

  onCancel({ senderId, transferId }) {
    const t = this.incoming.get(this.incomingKey(senderId, transferId));
    if (t && t.status === 'receiving') {
      clearTimeout(t.timer);
      t.status = 'cancelled';
      t.chunks = null;
      this.io.onUpdate(t);
      return;
    }
    // On expiry the server also sends our own transfer's cancel to us.
    const mine = this.outgoing.get(transferId);
    if (mine && mine.status === 'sending') {
      mine.status = 'cancelled';
      this.io.onUpdate(mine);
    }
  }

  fail(t, message) {
    clearTimeout(t.timer);
    t.status = 'failed';
    t.error = message;
    t.chunks = null;
    this.io.onUpdate(t);
  }

  /** The connection dropped: the server cancels everything in flight. */
  onDisconnect() {
    for (const t of this.outgoing.values()) {
      if (t.status === 'sending' || t.status === 'queued') {
        t.status = 'failed';
        t.error = 'Connection lost during the transfer.';
        this.io.onUpdate(t);
      }
    }
    this.queue = [];
    for (const t of this.incoming.values()) {
      if (t.status === 'receiving') this.fail(t, 'Connection lost during the transfer.');
    }
  }

  /** Forget everything (leaving the room); revoke object URLs. */
  clear() {
    for (const t of [...this.outgoing.values(), ...this.incoming.values()]) {
      clearTimeout(t.timer);
      if (t.status === 'sending' || t.status === 'queued') t.status = 'cancelled';
      this.release(t);
    }
    this.outgoing.clear();
    this.incoming.clear();
    this.queue = [];
  }

  release(t) {
    if (t.url) URL.revokeObjectURL(t.url);
    if (t.previewUrl) URL.revokeObjectURL(t.previewUrl);
    t.url = null;
    t.previewUrl = null;
    t.chunks = null;
  }
}

// A tiny stand-in for the arthas binary, for developing the web client
// before/without the Rust server: serves web/ with the production CSP and
// speaks the relay protocol in memory on /ws (a subset, enough for the UI).
// The browser tests use it only when ARTHAS_DEV_RELAY=1 is set; the real
// tests run against the arthas binary.
//
//   node web/tests/helpers/dev-relay.mjs [--listen 127.0.0.1:0]
//        [--ping-interval-ms 25000] [--expiry-warning-lead-secs 300]
//        [--expiry-sweep-interval-ms 1000]

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { encode, decode } from '../../js/msgpack.js';

const WEB_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

function serveStatic(req, res) {
  const url = new URL(req.url, 'http://x');
  let rel = decodeURIComponent(url.pathname);
  if (rel === '/') rel = '/index.html';
  const file = path.normalize(path.join(WEB_ROOT, rel));
  const excluded = /^\/(tests|tools|node_modules)(\/|$)|^\/package(-lock)?\.json$/.test(rel);
  const headers = { 'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff' };
  if (!file.startsWith(WEB_ROOT + path.sep) || excluded || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    const index = fs.readFileSync(path.join(WEB_ROOT, 'index.html'));
    res.writeHead(200, { ...headers, 'Content-Type': TYPES['.html'], 'Cache-Control': 'no-cache' });
    res.end(index);
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
  res.end(fs.readFileSync(file));
}

// ------------------------------------------------------------ relay

export function startDevRelay({ listen = '127.0.0.1:0', pingIntervalMs = 25000, warningLeadSecs = 300, sweepMs = 1000 } = {}) {
  const rooms = new Map();
  const clients = new Set();
  const colorOf = (id) => {
    let h = 0;
    for (const ch of id) h = (Math.imul(h, 31) + ch.codePointAt(0)) >>> 0;
    const r = ((h >> 16) & 0xff) | 0x40;
    const g = ((h >> 8) & 0xff) | 0x40;
    const b = (h & 0xff) | 0x40;
    return '#' + [r, g, b].map((x) => x.toString(16).padStart(2, '0')).join('');
  };
  const nanoid = () => {
    const a = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
    return [...crypto.randomBytes(21)].map((b) => a[b & 63]).join('');
  };
  const out = (c, type, data) => {
    if (c.ws.readyState === c.ws.OPEN) c.ws.send(encode({ type, data }));
  };
  const err = (c, code, msg) => out(c, 0x17, { code, msg });
  const others = (c) => [...c.room.members.values()].filter((m) => m !== c);
  const memberInfo = (m) => ({ id: m.id, name: m.name, color: m.color });
  const nameOk = (n) => typeof n === 'string' && n.length > 0 && [...n].length <= 20;

  function leave(c) {
    const room = c.room;
    if (!room) return;
    if (c.transfer) {
      for (const m of others(c)) out(m, 0x1d, { senderId: c.id, transferId: c.transfer });
      c.transfer = null;
    }
    room.members.delete(c.id);
    for (const m of room.members.values()) out(m, 0x13, { id: c.id });
    if (!room.members.size) rooms.delete(room.id);
    c.room = null;
  }

  function join(c, room, name) {
    let id;
    do id = crypto.randomUUID().slice(0, 8); while (room.members.has(id));
    c.id = id;
    c.name = name;
    c.color = colorOf(id);
    for (const m of room.members.values()) out(m, 0x12, memberInfo(c));
    room.members.set(id, c);
    c.room = room;
    out(c, 0x11, { roomId: room.id, members: [...room.members.values()].map(memberInfo), hasPassword: room.password !== '', ephemeral: room.ephemeral, expiresAt: room.expiresAt });
  }

  function handle(c, bytes) {
    let env;
    try {
      env = decode(bytes);
    } catch {
      err(c, 'E005', 'invalid message format');
      return;
    }
    const d = env && env.data && typeof env.data === 'object' ? env.data : {};
    const now = Date.now();
    switch (env && env.type) {
      case 0x01: {
        if (c.room) return err(c, 'E005', 'already in a room');
        if (!nameOk(d.name)) return err(c, 'E005', 'name must be 1-20 characters');
        const password = typeof d.password === 'string' ? d.password : '';
        if (password && password.length !== 64) return err(c, 'E005', 'invalid password format');
        let expiry = typeof d.expiry === 'number' ? d.expiry : 0;
        expiry = Math.min(Math.max(expiry, 0), 604800);
        const room = { id: nanoid(), password, ephemeral: typeof d.ephemeral === 'number' ? d.ephemeral : 0, expiresAt: expiry > 0 ? Math.floor(now / 1000) + expiry : 0, members: new Map(), warned: false };
        rooms.set(room.id, room);
        out(c, 0x10, { roomId: room.id, expiresAt: room.expiresAt });
        return join(c, room, d.name);
      }
      case 0x02: {
        if (c.room) return err(c, 'E005', 'already in a room');
        if (!nameOk(d.name)) return err(c, 'E005', 'name must be 1-20 characters');
        const room = rooms.get(d.roomId);
        if (!room) return err(c, 'E001', 'room not found');
        if (room.expiresAt && now / 1000 > room.expiresAt) return err(c, 'E007', 'room has expired');
        if (room.password && d.password !== room.password) return err(c, 'E006', 'wrong password');
        if (room.members.size >= 50) return err(c, 'E002', 'room is full');
        return join(c, room, d.name);
      }
      case 0x03: {
        if (!c.room) return err(c, 'E003', 'not in a room');
        if (typeof d.iv !== 'string' || !d.iv || typeof d.ciphertext !== 'string' || !d.ciphertext) return err(c, 'E005', 'iv and ciphertext must be non-empty strings');
        c.sent = c.sent.filter((t) => now - t < 10000);
        if (c.sent.length >= 10) return err(c, 'E004', 'rate limited, please slow down');
        c.sent.push(now);
        for (const m of others(c)) out(m, 0x14, { senderId: c.id, senderName: c.name, iv: d.iv, ciphertext: d.ciphertext, t: now });
        return undefined;
      }
      case 0x04:
        return leave(c);
      case 0x05: {
        if (!c.room) return err(c, 'E003', 'not in a room');
        const msg = { id: c.id, typing: d.typing === true };
        if (typeof d.iv === 'string' && typeof d.ciphertext === 'string') Object.assign(msg, { iv: d.iv, ciphertext: d.ciphertext });
        for (const m of others(c)) out(m, 0x15, msg);
        return undefined;
      }
      case 0x06:
        return undefined;
      case 0x07:
        if (!c.room) return err(c, 'E003', 'not in a room');
        if (typeof d.iv !== 'string' || !d.iv || typeof d.ciphertext !== 'string' || !d.ciphertext) return err(c, 'E005', 'invalid reaction data');
        for (const m of others(c)) out(m, 0x19, { senderId: c.id, senderName: c.name, iv: d.iv, ciphertext: d.ciphertext, t: now });
        return undefined;
      case 0x08:
        if (!c.room) return err(c, 'E003', 'not in a room');
        if (c.transfer) return err(c, 'E005', 'already has active transfer');
        if (typeof d.transferId !== 'string' || typeof d.iv !== 'string' || !(d.ciphertext instanceof Uint8Array)) return err(c, 'E005', 'transferId, iv, and ciphertext are required');
        c.transfer = d.transferId;
        for (const m of others(c)) out(m, 0x1a, { senderId: c.id, senderName: c.name, transferId: d.transferId, iv: d.iv, ciphertext: d.ciphertext, t: now });
        return undefined;
      case 0x09:
        if (!c.room) return err(c, 'E003', 'not in a room');
        if (!(d.iv instanceof Uint8Array) || !(d.data instanceof Uint8Array)) return err(c, 'E005', 'iv and data must be non-empty');
        if (d.transferId !== c.transfer) return err(c, 'E005', 'transferId does not match active transfer');
        for (const m of others(c)) out(m, 0x1b, { senderId: c.id, transferId: d.transferId, index: d.index, iv: d.iv, data: d.data });
        return undefined;
      case 0x0a:
      case 0x0b:
        if (!c.room) return err(c, 'E003', 'not in a room');
        if (d.transferId !== c.transfer) return err(c, 'E005', 'transferId does not match active transfer');
        if (env.type === 0x0a) c.lastTransfer = c.transfer;
        c.transfer = null;
        for (const m of others(c)) out(m, env.type === 0x0a ? 0x1c : 0x1d, { senderId: c.id, transferId: d.transferId });
        return undefined;
      case 0x0c: {
        if (!c.room) return err(c, 'E003', 'not in a room');
        const sender = others(c).find((m) => m.transfer === d.transferId || m.lastTransfer === d.transferId);
        if (sender) out(sender, 0x1e, { receiverId: c.id, transferId: d.transferId });
        return undefined;
      }
      default:
        return undefined;
    }
  }

  const server = http.createServer((req, res) => {
    if (req.url === '/ping') { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('pong'); return; }
    serveStatic(req, res);
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (new URL(req.url, 'http://x').pathname !== '/ws') { socket.destroy(); return; }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const c = { ws, room: null, id: null, sent: [], transfer: null };
      clients.add(c);
      ws.on('message', (msg) => handle(c, msg));
      ws.on('close', () => { clients.delete(c); leave(c); });
      ws.on('error', () => {});
    });
  });

  const ping = setInterval(() => {
    for (const c of clients) {
      if (c.ws.readyState === c.ws.OPEN) c.ws.ping();
      out(c, 0x18, { t: Date.now() });
    }
  }, pingIntervalMs);
  const sweep = setInterval(() => {
    const now = Date.now() / 1000;
    for (const room of rooms.values()) {
      if (!room.expiresAt) continue;
      if (now > room.expiresAt) {
        for (const m of room.members.values()) {
          out(m, 0x16, { reason: 'expired' });
          m.room = null;
          m.transfer = null;
        }
        rooms.delete(room.id);
      } else if (!room.warned && room.expiresAt - now <= warningLeadSecs) {
        room.warned = true;
        for (const m of room.members.values()) out(m, 0x14, { senderId: 'system', senderName: 'System', iv: '', ciphertext: '__SYSTEM_EXPIRY_WARNING__', t: Math.floor(now) * 1000 });
      }
    }
  }, sweepMs);

  const [host, port] = listen.split(':');
  return new Promise((resolve) => {
    server.listen(Number(port), host, () => {
      const addr = server.address();
      resolve({
        url: `http://${addr.address}:${addr.port}`,
        close: () => new Promise((r) => {
          clearInterval(ping);
          clearInterval(sweep);
          for (const c of clients) c.ws.terminate();
          server.close(() => r());
        }),
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const relay = await startDevRelay({
    listen: arg('listen', '127.0.0.1:0'),
    pingIntervalMs: Number(arg('ping-interval-ms', 25000)),
    warningLeadSecs: Number(arg('expiry-warning-lead-secs', 300)),
    sweepMs: Number(arg('expiry-sweep-interval-ms', 1000)),
  });
  process.stdout.write(`listening on ${relay.url}\n`);
  const stop = () => relay.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

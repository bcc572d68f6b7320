// k6 load test for an Arthas relay cluster: rooms of MEMBERS members chat at
// RATE messages per second each (the relay allows 10 per 10 s, so keep it
// under 1), with members spread round-robin over the relay URLs in RELAYS.
// Each VU owns one room. Every message carries its send time, so each
// recipient records the delivery latency; every delivery is counted, so loss
// is visible. Ciphertext is random base64url text: the relay never sees a key.
//
//   k6 run -e RELAYS=ws://127.0.0.1:8080/ws,ws://127.0.0.1:8090/ws \
//          -e ROOMS=50 -e MEMBERS=10 -e RATE=0.9 -e DURATION=60s loadtest/k6/chat.js
//
// Thresholds (failing the run): lost deliveries under 0.1 % of those
// expected (arthas_lost is the share of expected deliveries that never
// arrived), no error frames other than rate limiting, every member joined,
// p99 delivery latency under P99_MS (default 100 ms: k6 itself shares the
// machine; the Rust load generator measures the tight budgets).
//
// A send the relay refuses as rate-limited (E004, the sender is told) is
// neither lost nor an error: it is taken out of the expected deliveries and
// counted in arthas_rate_limited. With EXPECT_RATE_LIMITED=1 the run must
// see some (the CI smoke run lowers the relays' chat rate limit to check
// exactly this).
//
// MODE=joins: the join phase alone, the same work as `arthas-loadgen
// --mode joins`: ROOMS rooms of MEMBERS members, CONCURRENCY (64) rooms
// being opened at once. A room's creator connects and sends CreateRoom;
// once it has its RoomJoined the other members connect and send JoinRoom at
// once. A refused handshake (HTTP 503) or an E005 "retry" is retried on a
// new connection with the web client's backoff (1 s doubling to 30 s,
// jittered by ±50 %) within RETRY_BUDGET (8) refusals. Every session stays
// open, nothing read after its RoomJoined, until every room is open: then
// the script logs "joins done", holds HOLD (3) seconds and closes them, so
// no leave falls inside the measured window. One VU runs the whole phase
// (the sessions of all rooms must stay open until the last room is open,
// and VUs share nothing). k6 cannot read the servers' CPU, so
// `loadtest/bench.sh k6-joins` samples /proc/PID/stat of every server
// process before the run and at "joins done" and divides by the joins this
// script counts (`arthas_joined`), the same function that measures
// arthas-loadgen's joins (`bench.sh joins`).

import './textcodec.js';
import exec from 'k6/execution';
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';
import { setTimeout, setInterval, clearInterval } from 'k6/timers';
import { encode, decode } from './msgpack.mjs';

const RELAYS = (__ENV.RELAYS || 'ws://127.0.0.1:8080/ws').split(',').map((s) => s.trim()).filter(Boolean);
const ROOMS = Number(__ENV.ROOMS || 20);
const MEMBERS = Number(__ENV.MEMBERS || 10);
const RATE = Number(__ENV.RATE || 0.9);
const DURATION = __ENV.DURATION || '30s';
const PAYLOAD = Number(__ENV.PAYLOAD || 256);
const P99_MS = Number(__ENV.P99_MS || 100);
const MODE = __ENV.MODE || 'chat';
const CONCURRENCY = Number(__ENV.CONCURRENCY || 64);
const RETRY_BUDGET = Number(__ENV.RETRY_BUDGET || 8);
const HOLD = Number(__ENV.HOLD || 3);
const EXPECT_RATE_LIMITED = __ENV.EXPECT_RATE_LIMITED === '1';

const chatOptions = {
  scenarios: {
    rooms: {
      executor: 'per-vu-iterations',
      vus: ROOMS,
      iterations: 1,
      maxDuration: '30m',
    },
  },
  thresholds: {
    arthas_delivery_ms: [`p(99)<${P99_MS}`],
    arthas_lost: ['rate<0.001'],
    arthas_error_frames: ['count==0'],
    arthas_joined: [`count==${ROOMS * MEMBERS}`],
    ...(EXPECT_RATE_LIMITED ? { arthas_rate_limited: ['count>0'] } : {}),
  },
};

const joinsOptions = {
  scenarios: {
    joins: {
      executor: 'per-vu-iterations',
      exec: 'joins',
      vus: 1,
      iterations: 1,
      maxDuration: '30m',
    },
  },
  thresholds: {
    arthas_error_frames: ['count==0'],
    arthas_joined: [`count==${ROOMS * MEMBERS}`],
  },
};

export const options = MODE === 'joins' ? joinsOptions : chatOptions;

const delivery = new Trend('arthas_delivery_ms', true);
const delivered = new Counter('arthas_delivered');
const sent = new Counter('arthas_sent');
// One sample per expected delivery: true when it never arrived.
const lost = new Rate('arthas_lost');
const rateLimited = new Counter('arthas_rate_limited');
// How long after the last send a room waits for deliveries before counting loss.
const SETTLE_MS = 3000;
const errorFrames = new Counter('arthas_error_frames');
const joined = new Counter('arthas_joined');
// Joins mode: refusals retried, the most of one client, clients that gave
// up, and the seconds from the first connection to the last RoomJoined.
const refusalsRetried = new Counter('arthas_refusals_retried');
const mostRefusals = new Gauge('arthas_most_refusals_of_one_client');
const joinFailures = new Counter('arthas_join_failures');
const joinSeconds = new Gauge('arthas_join_seconds');

const T = { CREATE: 0x01, JOIN: 0x02, SEND: 0x03, PONG: 0x06, CREATED: 0x10, JOINED: 0x11, RELAY: 0x14, ERROR: 0x17, PING: 0x18 };
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

function randomText(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += B64[(Math.random() * 64) | 0];
  return s;
}

function parseDuration(d) {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) return 30000;
  return Number(m[1]) * { ms: 1, s: 1000, m: 60000 }[m[2]];
}

function send(ws, type, data) {
  ws.send(encode({ type, data }).buffer);
}

// One member: joins (or creates) and then chats until `stopAt`; `room`
// counts what the room's members sent and received (one room per VU).
function member(index, roomId, stopAt, room, onReady) {
  const url = RELAYS[index % RELAYS.length];
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  let timer = null;
  const padding = randomText(Math.max(0, PAYLOAD - 20));
  ws.onopen = () => {
    if (roomId) send(ws, T.JOIN, { roomId, name: `m${index}`, password: '' });
    else send(ws, T.CREATE, { name: `m${index}`, password: '', ephemeral: 0, expiry: 0 });
  };
  ws.onmessage = (event) => {
    const msg = decode(new Uint8Array(event.data));
    switch (msg.type) {
      case T.CREATED:
        onReady(msg.data.roomId);
        break;
      case T.JOINED:
        joined.add(1);
        setTimeout(() => {
          timer = setInterval(() => {
            if (Date.now() >= stopAt) {
              clearInterval(timer);
              setTimeout(() => ws.close(), SETTLE_MS + 500);
              return;
            }
            send(ws, T.SEND, { iv: randomText(16), ciphertext: `${Date.now()}:${padding}` });
            sent.add(1);
            room.sent += 1;
          }, 1000 / RATE);
        }, Math.random() * (1000 / RATE));
        break;
      case T.RELAY: {
        const at = Number(String(msg.data.ciphertext).split(':', 1)[0]);
        delivery.add(Date.now() - at);
        delivered.add(1);
        lost.add(false);
        room.delivered += 1;
        break;
      }
      case T.PING:
        send(ws, T.PONG, { t: msg.data.t });
        break;
      case T.ERROR:
        if (msg.data.code === 'E004') {
          // Refused by the chat rate limit, and the sender knows: not sent.
          rateLimited.add(1);
          room.sent -= 1;
          break;
        }
        errorFrames.add(1);
        console.error(`error frame ${msg.data.code}: ${msg.data.msg}`);
        break;
      default:
        break;
    }
  };
  ws.onerror = (e) => console.error(`websocket error on ${url}: ${e.error}`);
}

// The web client's reconnect delay before attempt `n + 1` (1 s doubling to
// 30 s, jittered by ±50 %), as arthas-loadgen's `backoff`.
function backoff(n) {
  return Math.min(1000 * 2 ** Math.min(n, 5), 30000) * (0.5 + Math.random());
}

// Joins mode: one member connects and creates (no `roomId`) or joins the
// room, retrying refusals; `onJoined(ws, roomId)` gets its open socket at
// its RoomJoined, `onFailed()` is called if it gives up.
function enter(index, roomId, attempt, onJoined, onFailed) {
  const url = RELAYS[index % RELAYS.length];
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  let settled = false;
  let created = roomId;
  const refused = (why) => {
    if (settled) return;
    settled = true;
    try {
      ws.close();
    } catch (_) {
      // Never opened.
    }
    if (attempt < RETRY_BUDGET) {
      refusalsRetried.add(1);
      setTimeout(() => enter(index, roomId, attempt + 1, onJoined, onFailed), backoff(attempt));
    } else {
      joinFailures.add(1);
      console.error(`join failed: ${why}`);
      onFailed();
    }
  };
  ws.onopen = () => {
    if (roomId) send(ws, T.JOIN, { roomId, name: `m${index}`, password: '' });
    else send(ws, T.CREATE, { name: `m${index}`, password: '', ephemeral: 0, expiry: 0 });
  };
  const failed = (why) => {
    if (settled) return;
    settled = true;
    joinFailures.add(1);
    console.error(`join failed: ${why}`);
    ws.close();
    onFailed();
  };
  ws.onmessage = (event) => {
    if (settled) return;
    const msg = decode(new Uint8Array(event.data));
    if (msg.type === T.CREATED) created = msg.data.roomId;
    else if (msg.type === T.JOINED) {
      settled = true;
      joined.add(1);
      if (attempt > 0) mostRefusals.add(attempt);
      // Nothing more is read (arthas-loadgen does not read a joined socket either).
      ws.onmessage = () => {};
      onJoined(ws, created);
    } else if (msg.type === T.ERROR) {
      if (msg.data.code === 'E005') {
        refused(`${msg.data.code} ${msg.data.msg}`);
        return;
      }
      errorFrames.add(1);
      failed(`${msg.data.code} ${msg.data.msg}`);
    }
  };
  // A refused handshake (HTTP 503 from a busy relay; k6 says only "bad
  // handshake", and with the per-address limits lifted 503 is the one a
  // relay answers on loopback) ends here, before any frame.
  ws.onerror = (e) => {
    const why = String(e.error);
    if (why.includes('bad handshake')) refused(why);
    else failed(why);
  };
}

export function joins() {
  const started = Date.now();
  const sockets = [];
  let next = 0;
  let finished = 0;
  const openRoom = () => {
    const base = next * MEMBERS;
    next += 1;
    let pending = MEMBERS;
    const memberEnded = () => {
      pending -= 1;
      if (pending === 0) roomEnded();
    };
    const kept = (ws) => {
      sockets.push(ws);
      memberEnded();
    };
    const giveUp = () => {
      // arthas-loadgen gives up a room whose creation failed.
      pending = 1;
      memberEnded();
    };
    enter(base, null, 0, (ws, roomId) => {
      kept(ws);
      for (let i = 1; i < MEMBERS; i++) enter(base + i, roomId, 0, kept, memberEnded);
    }, giveUp);
  };
  const roomEnded = () => {
    finished += 1;
    if (next < ROOMS) openRoom();
    else if (finished === ROOMS) {
      joinSeconds.add((Date.now() - started) / 1000);
      console.log(`joins done: ${sockets.length} sessions open`);
      setTimeout(() => sockets.forEach((ws) => ws.close()), HOLD * 1000);
    }
  };
  for (let r = 0; r < Math.min(CONCURRENCY, ROOMS); r++) openRoom();
}

export default function () {
  const stopAt = Date.now() + parseDuration(DURATION);
  const base = (__VU - 1) * MEMBERS;
  const room = { sent: 0, delivered: 0 };
  member(base, null, stopAt, room, (roomId) => {
    for (let i = 1; i < MEMBERS; i++) member(base + i, roomId, stopAt, room, () => {});
  });
  setTimeout(() => {
    const expected = room.sent * (MEMBERS - 1);
    for (let i = room.delivered; i < expected; i++) lost.add(true);
  }, parseDuration(DURATION) + SETTLE_MS);
}

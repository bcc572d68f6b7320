// One WebSocket to a relay's /ws (relays.js picks which), binary MessagePack envelopes, automatic
// answer of Ping (0x18) with Pong (0x06) {t}, and reconnection with backoff
// 1 s doubling to 30 s. Emits: 'status' {state, delay?}, 'open' {reconnect},
// 'message' {type, data}, 'invalid'.

import { C, S, encodeEnvelope, decodeEnvelope } from './protocol.js';

export const BACKOFF_START_MS = 1000;
export const BACKOFF_MAX_MS = 30_000;

/** Delay before reconnect attempt number `attempt` (0-based). */
export function backoffDelay(attempt) {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** Math.min(attempt, 16));
}

/** ws(s)://host/ws for the page's own origin. */
export function sameOriginWsUrl(loc = globalThis.location) {
  const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${loc.host}/ws`;
}

export class Connection extends EventTarget {
  /** `url`: the WebSocket URL, or a function giving one per attempt. */
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    this.timer = null;
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  get bufferedAmount() {
    return this.ws ? this.ws.bufferedAmount : 0;
  }

  /** Resolves when the socket is open (connecting if needed). */
  whenOpen() {
    if (this.isOpen()) return Promise.resolve();
    this.stopped = false;
    if (!this.ws && !this.timer) this.open();
    return new Promise((resolve) => {
      const onOpen = () => {
        this.removeEventListener('open', onOpen);
        resolve();
      };
      this.addEventListener('open', onOpen);
    });
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    this.emit('status', { state: this.everOpened ? 'reconnecting' : 'connecting' });
    const ws = new WebSocket(typeof this.url === 'function' ? this.url() : this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      const reconnect = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.emit('status', { state: 'open' });
      this.emit('open', { reconnect });
    });
    ws.addEventListener('message', (ev) => {
      if (this.ws !== ws) return;
      this.onFrame(ev.data);
    });
    ws.addEventListener('close', (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.emit('closed', { code: ev.code });
      if (this.stopped) {
        this.emit('status', { state: 'closed' });
        return;
      }
      const delay = backoffDelay(this.attempt++);
      this.emit('status', { state: 'waiting', delay });
      this.timer = setTimeout(() => this.open(), delay);
    });
    // 'error' is always followed by 'close'; nothing else to do here.
  }

  onFrame(raw) {
    if (!(raw instanceof ArrayBuffer)) {
      this.emit('invalid', { reason: 'text frame' });
      return;
    }
    let env;
    try {
      env = decodeEnvelope(new Uint8Array(raw));
    } catch {
      this.emit('invalid', { reason: 'undecodable frame' });
      return;
    }
    if (env.type === S.PING) {
      // a t beyond 2^53 decodes as a BigInt, which is not echoed (the server ignores Pong's t)
      const t = env.data && typeof env.data.t === 'number' ? env.data.t : 0;
      this.send(C.PONG, { t });
      return;
    }
    this.emit('message', env);
  }

  /** Send one envelope; false when the socket is not open. */
  send(type, data) {
    if (!this.isOpen()) return false;
    this.ws.send(encodeEnvelope(type, data));
    return true;
  }

  /** Retry now instead of waiting for the backoff timer. */
  retryNow() {
    if (this.ws || this.stopped) return;
    this.open();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) this.ws.close(1000);
  }
}

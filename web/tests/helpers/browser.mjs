// Chromium (Debian's /usr/bin/chromium) driven by playwright-core, plus the
// per-page recorders the tests assert on: every WebSocket frame sent and
// received, console errors and page errors, and requests to other origins.

import { chromium } from 'playwright-core';
import { decode } from '../../js/msgpack.js';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Chromium, headless; `extraArgs` are appended (e.g. a pinned test certificate). */
export function launchBrowser({ extraArgs = [] } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...extraArgs],
  });
}

/**
 * A fresh browser context + page bound to `baseUrl`, with recorders:
 *   frames: [{dir:'sent'|'received', bytes: Buffer, url, at}]
 *   errors: console errors and uncaught page errors
 *   foreign: URLs of requests/websockets to any other origin
 */
export async function openClient(browser, baseUrl, { viewport = { width: 1100, height: 720 }, name = 'client' } = {}) {
  const context = await browser.newContext({ viewport, acceptDownloads: true });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const origin = new URL(baseUrl).origin;
  const host = new URL(baseUrl).host;
  const rec = { name, context, page, baseUrl, origin, frames: [], errors: [], foreign: [], sockets: [] };
  page.on('console', (msg) => {
    if (msg.type() === 'error') rec.errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => rec.errors.push(`pageerror: ${err.message}`));
  page.on('request', (req) => {
    const u = req.url();
    if (u.startsWith('data:') || u.startsWith('blob:')) return;
    if (new URL(u).origin !== origin) rec.foreign.push(u);
  });
  page.on('websocket', (ws) => {
    rec.sockets.push(ws.url());
    if (new URL(ws.url()).host !== host) rec.foreign.push(ws.url());
    const push = (dir) => (f) => {
      const bytes = typeof f.payload === 'string' ? Buffer.from(f.payload, 'utf8') : Buffer.from(f.payload);
      rec.frames.push({ dir, bytes, url: ws.url(), at: Date.now() });
    };
    ws.on('framesent', push('sent'));
    ws.on('framereceived', push('received'));
  });
  return rec;
}

/** Decoded envelopes of recorded frames in one direction. */
export function envelopes(rec, dir) {
  const out = [];
  for (const f of rec.frames) {
    if (dir && f.dir !== dir) continue;
    try {
      out.push(decode(new Uint8Array(f.bytes)));
    } catch {
      out.push({ type: -1, raw: f.bytes });
    }
  }
  return out;
}

/** Every byte pattern under which a secret could show up in a frame. */
export function secretForms(secret, { rawBytes } = {}) {
  const utf8 = Buffer.from(secret, 'utf8');
  const forms = [utf8, Buffer.from(utf8.toString('base64')), Buffer.from(utf8.toString('base64').replace(/=+$/, '')), Buffer.from(utf8.toString('base64url'))];
  if (rawBytes) {
    forms.push(rawBytes, Buffer.from(rawBytes.toString('hex')), Buffer.from(rawBytes.toString('base64')), Buffer.from(rawBytes.toString('base64').replace(/=+$/, '')), Buffer.from(rawBytes.toString('base64url')));
  }
  return forms.filter((b) => b.length >= 4);
}

/** [{secret, dir, frameIndex}] for every recorded frame that contains a form of a secret. */
export function findLeaks(recs, secrets) {
  const leaks = [];
  for (const rec of recs) {
    rec.frames.forEach((f, i) => {
      for (const s of secrets) {
        for (const form of s.forms) {
          if (f.bytes.indexOf(form) !== -1) {
            leaks.push({ client: rec.name, secret: s.label, dir: f.dir, frameIndex: i });
            return;
          }
        }
      }
    });
  }
  return leaks;
}

/** Wait until `fn()` is truthy (polling a recorder, not a fixed sleep). */
export async function waitUntil(fn, { timeout = 15_000, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Pages are allowed to log these while a server is deliberately down. */
export const RECONNECT_NOISE = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED/;

/** Close the browser without letting a stuck close hang the test run. */
export async function closeBrowser(browser) {
  if (!browser) return;
  await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000).unref())]);
}

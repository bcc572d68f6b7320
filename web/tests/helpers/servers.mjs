// Where the browser tests find their relay(s).
//
// serverUrls(n) gives n base URLs for n browser contexts:
//   - ARTHAS_URLS="http://a:1,http://b:2": use already running relays (a cluster),
//     handed out round-robin; nothing is started or stopped here;
//   - ARTHAS_WEB_CLUSTER=1: a cluster is started for the test (a redis-server,
//     the `gateway` and n `relay` binaries next to the arthas binary), and each
//     context gets its own relay: the page and its socket come from that relay;
//   - otherwise one server is started and every context gets its URL.
// startServer() starts one arthas binary: ARTHAS_BIN, else target/debug/arthas,
// else target/release/arthas (relative to the repository root). With
// ARTHAS_DEV_RELAY=1 it starts web/tests/helpers/dev-relay.mjs instead (a
// Node stand-in used only while developing the client).

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// Every child started here, so that a failing test cannot leave one behind
// (a live child would also keep the test process from exiting).
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Stop every server this process started and that is still running. */
export async function stopAllServers() {
  await Promise.all([...children].map((c) => {
    if (c.exitCode !== null || c.signalCode !== null) return null;
    const done = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    return done.then(() => clearTimeout(t));
  }));
}
export const REPO_ROOT = path.resolve(HERE, '../../..');

export function serverCommand() {
  if (process.env.ARTHAS_DEV_RELAY === '1') {
    return { cmd: process.execPath, pre: [path.join(HERE, 'dev-relay.mjs')] };
  }
  const candidates = process.env.ARTHAS_BIN
    ? [path.resolve(REPO_ROOT, process.env.ARTHAS_BIN)]
    : [path.join(REPO_ROOT, 'target/debug/arthas'), path.join(REPO_ROOT, 'target/release/arthas')];
  const bin = candidates.find((p) => fs.existsSync(p));
  if (!bin) {
    throw new Error(`arthas binary not found (tried ${candidates.join(', ')}); build it with cargo build or set ARTHAS_BIN`);
  }
  return { cmd: bin, pre: [] };
}

/**
 * Start one server on 127.0.0.1 (port 0 unless `listen` is given).
 * Resolves to {url, port, stop(), exited, stderr()} once it printed
 * `listening on http://127.0.0.1:PORT` (`https://` when started with --tls-cert).
 */
export function startServer({ args = [], listen = '127.0.0.1:0', env = {}, bin = null, expect = [] } = {}) {
  const { cmd, pre } = bin ? { cmd: bin, pre: [] } : serverCommand();
  const child = spawn(cmd, [...pre, '--listen', listen, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ARTHAS_LOG: process.env.ARTHAS_LOG || 'warn', ...env },
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not report its address within 30 s\nstdout: ${out}\nstderr: ${stderr}`));
    }, 30_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (https?:\/\/[^\s]+)\n/);
      if (m && expect.every((re) => re.test(out))) {
        clearTimeout(timer);
        const url = m[1].replace(/\/$/, '');
        resolve({
          url,
          port: Number(new URL(url).port),
          exited,
          stderr: () => stderr,
          stdout: () => out,
          async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return exited;
            child.kill('SIGTERM');
            const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
            const res = await exited;
            clearTimeout(killer);
            return res;
          },
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited early with ${code}\nstdout: ${out}\nstderr: ${stderr}`));
    });
  });
}

/** A free loopback TCP port (for redis-server, which cannot report one). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Starts redis-server on a free port; resolves once it answers PING. */
async function startRedis() {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arthas-web-redis-'));
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out}`));
    });
  });
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await done;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Redis, a gateway and `n` relays; resolves to the relays' base URLs and the
 * gateway's (`gatewayUrl`). With `relayUrlsOnGateway`, the gateway is given
 * the relays' WebSocket URLs (`--relay-urls`), so the page it serves
 * connects to them.
 */
export async function startCluster(n = 2, { relayUrlsOnGateway = false } = {}) {
  const dir = path.dirname(serverCommand().cmd);
  const redis = await startRedis();
  const env = { ARTHAS_INTERNAL_SECRET: crypto.randomBytes(18).toString('base64url'), ARTHAS_REDIS_URL: redis.url };
  const started = [];
  const relayPorts = [];
  if (relayUrlsOnGateway) {
    for (let i = 0; i < n; i++) relayPorts.push(await freePort());
  }
  try {
    const relayUrls = relayPorts.map((p) => `ws://127.0.0.1:${p}/ws`).join(',');
    const gateway = await startServer({
      bin: path.join(dir, 'gateway'),
      args: ['--internal-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', ...(relayUrls ? ['--relay-urls', relayUrls] : [])],
      env,
      expect: [/internal on http:\/\/\S+\n/],
    });
    started.push(gateway);
    const internal = gateway.stdout().match(/internal on (http:\/\/[^\s]+)/);
    if (!internal) throw new Error(`gateway did not report its internal address: ${gateway.stdout()}`);
    for (let i = 0; i < n; i++) {
      started.push(await startServer({
        bin: path.join(dir, 'relay'),
        args: ['--admin-listen', '127.0.0.1:0', '--gateway-url', internal[1]],
        listen: relayPorts[i] ? `127.0.0.1:${relayPorts[i]}` : '127.0.0.1:0',
        env,
      }));
    }
  } catch (e) {
    await Promise.all(started.map((s) => s.stop()));
    await redis.stop();
    throw e;
  }
  const relays = started.slice(1);
  return {
    urls: relays.map((r) => r.url),
    gatewayUrl: started[0].url,
    servers: started,
    async stop() {
      await Promise.all(started.map((s) => s.stop()));
      await redis.stop();
    },
  };
}

/** n base URLs (one per browser context) and a stop() for what was started. */
export async function serverUrls(n = 2, options = {}) {
  const external = (process.env.ARTHAS_URLS || '').split(',').map((s) => s.trim().replace(/\/$/, '')).filter(Boolean);
  if (external.length) {
    return { urls: Array.from({ length: n }, (_, i) => external[i % external.length]), servers: [], stop: async () => {} };
  }
  if (process.env.ARTHAS_WEB_CLUSTER === '1') {
    return startCluster(n);
  }
  const server = await startServer(options);
  return { urls: Array.from({ length: n }, () => server.url), servers: [server], stop: () => server.stop() };
}

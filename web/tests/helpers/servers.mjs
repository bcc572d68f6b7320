// Where the browser tests find their relay(s).
//
// serverUrls(n) gives n base URLs for n browser contexts:
//   - ARTHAS_URLS="http://a:1,http://b:2": use already running relays (a cluster),
//     handed out round-robin; nothing is started or stopped here;
//   - otherwise one server is started and every context gets its URL.
// startServer() starts one arthas binary: ARTHAS_BIN, else target/debug/arthas,
// else target/release/arthas (relative to the repository root). With
// ARTHAS_DEV_RELAY=1 it starts web/tests/helpers/dev-relay.mjs instead (a
// Node stand-in used only while developing the client).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
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
 * `listening on http://127.0.0.1:PORT`.
 */
export function startServer({ args = [], listen = '127.0.0.1:0', env = {} } = {}) {
  const { cmd, pre } = serverCommand();
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
      const m = out.match(/listening on (http:\/\/[^\s]+)/);
      if (m) {
        clearTimeout(timer);
        const url = m[1].replace(/\/$/, '');
        resolve({
          url,
          port: Number(new URL(url).port),
          exited,
          stderr: () => stderr,
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

/** n base URLs (one per browser context) and a stop() for what was started. */
export async function serverUrls(n = 2, options = {}) {
  const external = (process.env.ARTHAS_URLS || '').split(',').map((s) => s.trim().replace(/\/$/, '')).filter(Boolean);
  if (external.length) {
    return { urls: Array.from({ length: n }, (_, i) => external[i % external.length]), servers: [], stop: async () => {} };
  }
  const server = await startServer(options);
  return { urls: Array.from({ length: n }, () => server.url), servers: [server], stop: () => server.stop() };
}

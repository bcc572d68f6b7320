// Room lifecycle in Chromium: Ping/Pong, the expiry countdown, the system
// expiry warning and RoomClosed, the client's own 10-per-10 s chat limit,
// and reconnecting with backoff (then rejoining the room).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopAllServers } from '../helpers/servers.mjs';
import { startProxy } from '../helpers/proxy.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes, waitUntil, RECONNECT_NOISE } from '../helpers/browser.mjs';
import { decode } from '../../js/msgpack.js';

const T = 15_000;

async function createRoom(client, name, { expiry } = {}) {
  const p = client.page;
  await p.goto(`${client.baseUrl}/`);
  await p.locator('#create-name').fill(name);
  if (expiry !== undefined) {
    // The UI offers hours and days; the protocol accepts any number of seconds.
    await p.locator('#create-expiry').evaluate((sel, secs) => {
      const o = document.createElement('option');
      o.value = String(secs);
      o.textContent = `${secs} s`;
      sel.append(o);
      sel.value = String(secs);
    }, expiry);
  }
  await p.getByRole('button', { name: 'Create encrypted room' }).click();
  await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
  return p.locator('#share-link').inputValue();
}

async function join(client, link, name) {
  await client.page.goto(`${client.baseUrl}/${new URL(link).hash}`);
  await client.page.locator('#join-name').fill(name);
  await client.page.getByRole('button', { name: 'Join room' }).click();
  await client.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
}

function decoded(rec, dir) {
  return rec.frames.filter((f) => f.dir === dir).map((f) => ({ at: f.at, ...decode(new Uint8Array(f.bytes)) }));
}

describe('room lifecycle', { timeout: 120_000 }, () => {
  let server;
  let browser;
  const clients = [];

  before(async () => {
    server = await startServer({
      args: ['--ping-interval-ms', '400', '--expiry-warning-lead-secs', '600', '--expiry-sweep-interval-ms', '200'],
    });
    browser = await launchBrowser();
  });

  after(async () => {
    await closeBrowser(browser);
    if (server) await server.stop();
    await stopAllServers();
  });

  async function client(name, url = server.url, opts = {}) {
    const c = await openClient(browser, url, { name, ...opts });
    clients.push(c);
    return c;
  }

  it('answers Ping with Pong, counts down, warns and closes an expiring room', async () => {
    const alice = await client('alice');
    await createRoom(alice, 'Alice', { expiry: 4 });
    await alice.page.locator('#room-expiry[data-state="soon"]', { hasText: /Expires in 0:0\d|Expiring now/ }).waitFor({ timeout: T });
    // the system warning (senderId "system", empty iv) is shown, not decrypted
    await alice.page.locator('#messages li.system', { hasText: 'expires in less than 5 minutes' }).waitFor({ timeout: T });
    const warning = decoded(alice, 'received').find((e) => e.type === 0x14 && e.data.senderId === 'system');
    assert.equal(warning.data.iv, '');
    assert.equal(warning.data.ciphertext, '__SYSTEM_EXPIRY_WARNING__');
    // Ping 0x18 {t} is answered by Pong 0x06 with the same t
    await waitUntil(() => decoded(alice, 'sent').some((e) => e.type === 0x06), { what: 'a Pong' });
    const pings = decoded(alice, 'received').filter((e) => e.type === 0x18).map((e) => e.data.t);
    const pongs = decoded(alice, 'sent').filter((e) => e.type === 0x06).map((e) => e.data.t);
    assert.ok(pongs.length >= 1);
    for (const t of pongs) assert.ok(pings.includes(t), `pong ${t} echoes a ping`);
    // RoomClosed: the composer is disabled and the room shows as closed
    await alice.page.locator('#closed-bar', { hasText: 'expired' }).waitFor({ timeout: T });
    assert.equal(await alice.page.locator('#room-expiry').textContent(), 'Closed');
    assert.ok(await alice.page.getByLabel('Message', { exact: true }).isDisabled());
    assert.ok(decoded(alice, 'received').some((e) => e.type === 0x16 && e.data.reason === 'expired'));
    await alice.page.getByRole('button', { name: 'Back to start' }).click();
    await alice.page.locator('#landing').waitFor();
    assert.deepEqual(alice.errors, []);
  });

  it('keeps its own limit of 10 chat messages per 10 s without losing any', async () => {
    const alice = await client('alice2');
    const bob = await client('bob2');
    const link = await createRoom(alice, 'Alice');
    await join(bob, link, 'Bob');
    await alice.page.locator('#member-list li', { hasText: 'Bob' }).waitFor({ timeout: T });
    const input = alice.page.getByLabel('Message', { exact: true });
    for (let i = 1; i <= 14; i++) {
      await input.fill(`burst message ${i}`);
      await input.press('Enter');
    }
    await bob.page.locator('#messages li[data-kind="chat"]', { hasText: 'burst message 14' }).waitFor({ timeout: 30_000 });
    for (let i = 1; i <= 14; i++) {
      assert.equal(await bob.page.locator('#messages li[data-kind="chat"] .body', { hasText: new RegExp(`^burst message ${i}$`) }).count(), 1, `message ${i}`);
    }
    const sends = decoded(alice, 'sent').filter((e) => e.type === 0x03).map((e) => e.at);
    for (let i = 0; i + 10 < sends.length; i++) {
      assert.ok(sends[i + 10] - sends[i] >= 10_000, `11 sends within ${sends[i + 10] - sends[i]} ms`);
    }
    assert.ok(!decoded(alice, 'received').some((e) => e.type === 0x17), 'no server error (E004)');
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });

  it('after a dropped connection it reconnects, rejoins and delivers what was queued', async () => {
    const proxy = await startProxy(server.url);
    try {
      const alice = await client('alice4', proxy.url);
      const bob = await client('bob4');
      const link = await createRoom(alice, 'Alice');
      await join(bob, link, 'Bob');
      await alice.page.locator('#member-list li', { hasText: 'Bob' }).waitFor({ timeout: T });

      proxy.drop({ refuse: true });
      await alice.page.locator('#conn-status[data-state="waiting"]').waitFor({ timeout: T });
      await bob.page.locator('#messages li.system', { hasText: 'Alice left.' }).waitFor({ timeout: T });
      // written while offline: queued, sent after the rejoin
      const input = alice.page.getByLabel('Message', { exact: true });
      await input.fill('sent while the line was down');
      await input.press('Enter');
      await alice.page.locator('#messages li[data-kind="chat"][data-state="sending"]', { hasText: 'sent while the line was down' }).waitFor();
      proxy.accept();

      await alice.page.locator('#messages li.system', { hasText: 'Reconnected.' }).waitFor({ timeout: 40_000 });
      await bob.page.locator('#messages li.system', { hasText: 'Alice joined.' }).waitFor({ timeout: T });
      await bob.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: 'sent while the line was down' }).waitFor({ timeout: T });
      await bob.page.getByLabel('Message', { exact: true }).fill('welcome back');
      await bob.page.getByLabel('Message', { exact: true }).press('Enter');
      await alice.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: 'welcome back' }).waitFor({ timeout: T });
      assert.equal(await bob.page.locator('#member-list li').count(), 2);
      const noise = [...alice.errors, ...bob.errors].filter((e) => !RECONNECT_NOISE.test(e));
      assert.deepEqual(noise, []);
    } finally {
      await proxy.close();
    }
  });

  it('after a server restart it reconnects and reports that the room is gone', async () => {
    const own = await startServer();
    const alice = await client('alice3', own.url);
    const bob = await client('bob3', own.url);
    const link = await createRoom(alice, 'Alice');
    const roomId = decodeURIComponent(new URL(link).hash.slice(1)).split(':')[0];
    await join(bob, link, 'Bob');
    await own.stop();
    await alice.page.locator('#conn-status[data-state="waiting"]', { hasText: 'Retrying in 1 s' }).waitFor({ timeout: T });
    await alice.page.locator('#messages li.system', { hasText: 'Connection lost' }).waitFor({ timeout: T });
    const again = await startServer({ listen: `127.0.0.1:${own.port}` });
    try {
      await alice.page.locator('#conn-status[data-state="open"]').waitFor({ timeout: 40_000 });
      // after reconnecting, each client sends JoinRoom for the same room again
      await waitUntil(() => envelopes(alice, 'sent').filter((e) => e.type === 0x02 && e.data.roomId === roomId).length === 1, { what: 'rejoin' });
      // the restarted (in-memory) server no longer knows the room: told clearly
      await alice.page.locator('#closed-bar', { hasText: 'no longer available' }).waitFor({ timeout: T });
      await bob.page.locator('#closed-bar', { hasText: 'no longer available' }).waitFor({ timeout: T });
      const joinsByBob = envelopes(bob, 'sent').filter((e) => e.type === 0x02 && e.data.roomId === roomId);
      assert.equal(joinsByBob.length, 2, 'first join and rejoin');
      const noise = [...alice.errors, ...bob.errors].filter((e) => !RECONNECT_NOISE.test(e));
      assert.deepEqual(noise, []);
    } finally {
      await again.stop();
    }
  });

  it('no request to another origin', () => {
    for (const c of clients) assert.deepEqual(c.foreign, [], c.name);
  });
});

// The address an operator opens first: the gateway's. In a cluster whose
// gateway is reached on its own address (no Ingress routing /ws to the
// relays), the gateway is started with the relays' URLs (--relay-urls): the
// page it serves connects to one of them, two people chat, and the share
// link points back at the gateway.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient } from '../helpers/browser.mjs';

const T = 15_000;
const MSG = 'Hello from the gateway URL';

describe('the web client served by the gateway of a cluster', { timeout: 120_000 }, () => {
  let cluster;
  let browser;
  let alice;
  let bob;

  before(async () => {
    cluster = await startCluster(2, { relayUrlsOnGateway: true });
    browser = await launchBrowser();
    alice = await openClient(browser, cluster.gatewayUrl, { name: 'alice' });
    bob = await openClient(browser, cluster.gatewayUrl, { name: 'bob' });
  });

  after(async () => {
    await closeBrowser(browser);
    if (cluster) await cluster.stop();
    await stopAllServers();
  });

  it('connects to a relay, and two people chat', async () => {
    const relayHosts = cluster.urls.map((u) => new URL(u).host);
    const a = alice.page;
    await a.goto(`${cluster.gatewayUrl}/`);
    await a.getByLabel('Your name').first().fill('Alice');
    await a.getByRole('button', { name: 'Create encrypted room' }).click();
    await a.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await a.getByRole('button', { name: 'Invite' }).click();
    const link = await a.locator('#share-link').inputValue();
    assert.equal(new URL(link).origin, new URL(cluster.gatewayUrl).origin, 'the link names the gateway');

    const b = bob.page;
    await b.goto(link);
    await b.locator('#join-name').fill('Bob');
    await b.getByRole('button', { name: 'Join room' }).click();
    await b.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await a.locator('#messages li.system', { hasText: 'Bob joined.' }).waitFor({ timeout: T });

    const input = a.getByLabel('Message', { exact: true });
    await input.fill(MSG);
    await input.press('Enter');
    await b.locator('#messages li[data-kind="chat"]', { hasText: MSG }).waitFor({ timeout: T });

    for (const client of [alice, bob]) {
      assert.ok(client.sockets.length >= 1, `${client.name} opened no WebSocket`);
      for (const url of client.sockets) {
        assert.ok(relayHosts.includes(new URL(url).host), `${client.name} connected to ${url}, not a relay`);
      }
      // Only the relays' sockets leave the gateway's origin.
      assert.deepEqual(client.foreign.filter((u) => !relayHosts.includes(new URL(u).host)), []);
      assert.deepEqual(client.errors, []);
    }
  });
});

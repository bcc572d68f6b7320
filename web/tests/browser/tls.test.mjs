// The web client over https/wss: the real binary serves TLS in-process with a
// certificate from a CA made here; Chromium trusts exactly that certificate
// (an SPKI pin). The page must open its socket with wss:// on its own origin,
// its CSP must allow nothing but its own origin, and two people chat.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes } from '../helpers/browser.mjs';
import { makeTestCertificates } from '../helpers/tls.mjs';

const T = 15_000;
const MSG = 'Over TLS, end to end encrypted as always';

describe('the web client over https and wss', { timeout: 90_000 }, () => {
  let certs;
  let server;
  let browser;
  let alice;
  let bob;

  before(async () => {
    certs = makeTestCertificates();
    server = await startServer({ args: ['--tls-cert', certs.cert, '--tls-key', certs.key] });
    browser = await launchBrowser({ extraArgs: [`--ignore-certificate-errors-spki-list=${certs.spki}`] });
    alice = await openClient(browser, server.url, { name: 'alice' });
    bob = await openClient(browser, server.url, { name: 'bob' });
  });

  after(async () => {
    await closeBrowser(browser);
    if (server) await server.stop();
    await stopAllServers();
    if (certs) certs.remove();
  });

  it('is served over https with a CSP naming only its own origin', async () => {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const response = await alice.page.goto(`${server.url}/`);
    assert.equal(response.status(), 200);
    const csp = response.headers()['content-security-policy'] || '';
    const connect = csp.split(';').map((d) => d.trim()).find((d) => d.startsWith('connect-src'));
    assert.equal(connect, "connect-src 'self'");
    assert.equal(await alice.page.evaluate(() => window.isSecureContext), true);
  });

  it('two people chat through a wss:// socket on the page origin', async () => {
    const p = alice.page;
    await p.getByLabel('Your name').first().fill('Alice');
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = await p.locator('#share-link').inputValue();
    assert.equal(new URL(link).origin, server.url);

    await bob.page.goto(`${server.url}/${new URL(link).hash}`);
    await bob.page.locator('#join-name').fill('Bob');
    await bob.page.getByRole('button', { name: 'Join room' }).click();
    await bob.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.locator('#member-list li', { hasText: 'Bob' }).waitFor({ timeout: T });

    const input = p.getByLabel('Message', { exact: true });
    await input.fill(MSG);
    await input.press('Enter');
    await bob.page.locator('#messages li[data-kind="chat"]', { hasText: MSG }).waitFor({ timeout: T });

    const wsOrigin = server.url.replace(/^https:/, 'wss:');
    for (const client of [alice, bob]) {
      assert.ok(client.sockets.length >= 1, `${client.name} opened no socket`);
      for (const url of client.sockets) assert.equal(url, `${wsOrigin}/ws`);
      assert.deepEqual(client.foreign, [], `${client.name} reached other origins`);
      assert.deepEqual(client.errors, [], `${client.name} had errors`);
      assert.ok(envelopes(client, 'received').length > 0);
    }
  });
});

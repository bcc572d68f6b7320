// A relay that replays, reorders and drops frames (docs/SECURITY.md §5.5): Bob's
// WebSocket goes through a hook (Playwright's routeWebSocket) that stands in
// for a malicious relay between his page and the real server. It can only
// move ciphertext it cannot read, and Bob's client shows what it did: a
// replayed message is marked "Replayed", a message delivered after a later
// one "Out of order", both stay correctly signed by Alice, and a message the
// relay withholds shows as a gap ("1 message from Alice missing").

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverUrls, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, waitUntil } from '../helpers/browser.mjs';
import { decode } from '../../js/msgpack.js';

const T = 15_000;

describe('a relay that replays, reorders and drops frames is detected', { timeout: 120_000 }, () => {
  let servers;
  let browser;
  let alice;
  let bob;
  // What the hook does to the next chat frames it relays to Bob.
  const hook = { mode: 'pass', held: null, relayed: 0, dropped: 0 };

  before(async () => {
    servers = await serverUrls(2);
    browser = await launchBrowser();
    alice = await openClient(browser, servers.urls[0], { name: 'alice' });
    bob = await openClient(browser, servers.urls[1], { name: 'bob' });
    await bob.page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        let type = -1;
        try {
          type = decode(new Uint8Array(typeof m === 'string' ? Buffer.from(m) : m)).type;
        } catch {
          // not an envelope: pass it on
        }
        if (type !== 0x14 || hook.mode === 'pass') {
          ws.send(m);
          return;
        }
        hook.relayed += 1;
        if (hook.mode === 'drop') {
          hook.mode = 'pass';
          hook.dropped += 1;
        } else if (hook.mode === 'replay') {
          hook.mode = 'pass';
          ws.send(m);
          ws.send(m);
        } else if (hook.mode === 'reorder' && !hook.held) {
          hook.held = m;
        } else if (hook.mode === 'reorder') {
          hook.mode = 'pass';
          ws.send(m);
          ws.send(hook.held);
          hook.held = null;
        }
      });
    });
  });

  after(async () => {
    await closeBrowser(browser);
    if (servers) await servers.stop();
    await stopAllServers();
  });

  const chat = (client, text, verify) => client.page.locator(`#messages li[data-kind="chat"]${verify ? `[data-verify="${verify}"]` : ''}`, { hasText: text });

  async function send(client, text) {
    const input = client.page.getByLabel('Message', { exact: true });
    await input.fill(text);
    await input.press('Enter');
  }

  it('Alice and Bob chat with verified signatures', async () => {
    const p = alice.page;
    await p.goto(`${alice.baseUrl}/`);
    await p.getByLabel('Your name').first().fill('Alice');
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = await p.locator('#share-link').inputValue();
    await bob.page.goto(`${bob.baseUrl}/${new URL(link).hash}`);
    await bob.page.locator('#join-name').fill('Bob');
    await bob.page.getByRole('button', { name: 'Join room' }).click();
    await bob.page.locator('#member-list li .member-fp').first().waitFor({ timeout: T });
    await alice.page.locator('#member-list li .member-fp').first().waitFor({ timeout: T });
    await send(alice, 'one');
    await chat(bob, 'one', 'verified').waitFor({ timeout: T });
  });

  it('a replayed message is shown as replayed', async () => {
    hook.mode = 'replay';
    await send(alice, 'pay Bob 10 coins');
    await waitUntil(() => chat(bob, 'pay Bob 10 coins').count().then((n) => n === 2), { what: 'the replayed copy' });
    await chat(bob, 'pay Bob 10 coins', 'verified').waitFor({ timeout: T });
    await chat(bob, 'pay Bob 10 coins', 'replayed').waitFor({ timeout: T });
    assert.match(await chat(bob, 'pay Bob 10 coins', 'replayed').locator('.verify').textContent(), /Replayed/);
  });

  it('reordered messages are shown as out of order', async () => {
    hook.mode = 'reorder';
    await send(alice, 'first in order');
    await send(alice, 'second in order');
    await chat(bob, 'first in order', 'reordered').waitFor({ timeout: T });
    await chat(bob, 'second in order', 'verified').waitFor({ timeout: T });
    // Bob saw them in the relay's (wrong) order; the marks tell him so.
    const texts = await bob.page.locator('#messages li[data-kind="chat"] .body').allTextContents();
    assert.ok(texts.indexOf('second in order') < texts.indexOf('first in order'));
    assert.match(await chat(bob, 'first in order').locator('.verify').textContent(), /Out of order/);
    // The gap the held frame opened for a moment closed when it arrived.
    await bob.page.locator('#messages li.system[data-missing="0"]', { hasText: 'The missing messages from Alice arrived late' }).waitFor({ timeout: T });
  });

  it('a dropped message is shown as missing', async () => {
    hook.mode = 'drop';
    await send(alice, 'withheld by the relay');
    await waitUntil(() => hook.dropped === 1, { what: 'the dropped frame' });
    await send(alice, 'after the gap');
    await chat(bob, 'after the gap', 'verified').waitFor({ timeout: T });
    const notice = bob.page.locator('#messages li.system[data-missing="1"]');
    await notice.waitFor({ timeout: T });
    assert.match(await notice.textContent(), /^1 message from Alice missing/);
    assert.equal(await chat(bob, 'withheld by the relay').count(), 0);
    // The notice sits where the gap was seen: right before the message after it.
    const kinds = await bob.page.locator('#messages li').evaluateAll((lis) => lis.slice(-2).map((li) => li.dataset.missing ?? li.textContent));
    assert.equal(kinds[0], '1');
  });

  it('messages relayed faithfully are verified again', async () => {
    await send(alice, 'back to normal');
    await chat(bob, 'back to normal', 'verified').waitFor({ timeout: T });
    assert.equal(hook.mode, 'pass');
    assert.equal(hook.relayed, 4, 'one replayed, two reordered and one dropped frame');
    assert.equal(await bob.page.locator('#messages li.system[data-missing]').count(), 2, 'no other gap was reported');
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });
});

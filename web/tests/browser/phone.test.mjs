// A phone-sized viewport, keyboard-only use, accessible names, replies and
// disappearing (ephemeral) messages.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverUrls, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient } from '../helpers/browser.mjs';

const T = 15_000;
const PHONE = { width: 390, height: 844 };

/** Interactive elements that are visible but have no accessible name. */
function unnamedControls(page) {
  return page.evaluate(() => {
    const bad = [];
    for (const e of document.querySelectorAll('button, input, select, textarea, a[href]')) {
      const visible = e.offsetParent !== null || e.classList.contains('visually-hidden');
      if (!visible || e.type === 'hidden') continue;
      const byLabel = e.id && document.querySelector(`label[for="${e.id}"]`);
      const name = (e.getAttribute('aria-label') || (byLabel && byLabel.textContent) || e.textContent || e.title || '').trim();
      if (!name) bad.push(e.outerHTML.slice(0, 80));
    }
    return bad;
  });
}

function noHorizontalScroll(page) {
  return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1);
}

describe('phone layout and keyboard use', { timeout: 90_000 }, () => {
  let servers;
  let browser;
  let alice;
  let bob;

  before(async () => {
    servers = await serverUrls(2);
    browser = await launchBrowser();
    alice = await openClient(browser, servers.urls[0], { name: 'alice', viewport: PHONE });
    bob = await openClient(browser, servers.urls[1], { name: 'bob', viewport: PHONE });
  });

  after(async () => {
    await closeBrowser(browser);
    if (servers) await servers.stop();
    await stopAllServers();
  });

  it('creates a room with the keyboard only', async () => {
    const p = alice.page;
    await p.goto(`${alice.baseUrl}/`);
    assert.deepEqual(await unnamedControls(p), []);
    assert.ok(await noHorizontalScroll(p));
    // the name field has focus; Enter submits the form
    assert.equal(await p.evaluate(() => document.activeElement.id), 'create-name');
    await p.keyboard.type('Alice');
    // choose "messages disappear after 30 seconds" with the keyboard
    await p.locator('#create-ephemeral').focus();
    await p.keyboard.press('ArrowDown');
    assert.equal(await p.locator('#create-ephemeral').inputValue(), '30');
    // keep the test short: 3 s instead of 30 s (the protocol takes any number)
    await p.locator('#create-ephemeral').evaluate((sel) => {
      const o = document.createElement('option');
      o.value = '3';
      o.textContent = 'After 3 seconds';
      sel.append(o);
      sel.value = '3';
    });
    await p.locator('#create-name').focus();
    await p.keyboard.press('Enter');
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    assert.equal(await p.evaluate(() => document.activeElement.id), 'message-input');
    await p.locator('#room-ephemeral', { hasText: 'Messages vanish after 3 s' }).waitFor();
    assert.ok(await noHorizontalScroll(p));
    assert.deepEqual(await unnamedControls(p), []);
  });

  it('members are behind a toggle on a phone; the invite panel opens and closes with the keyboard', async () => {
    const p = alice.page;
    const toggle = p.getByRole('button', { name: /Members/ });
    assert.equal(await p.locator('#members').isVisible(), false);
    await toggle.click();
    await p.locator('#members').waitFor({ state: 'visible' });
    assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
    await toggle.click();
    await p.locator('#members').waitFor({ state: 'hidden' });

    const invite = p.getByRole('button', { name: 'Invite' });
    await invite.focus();
    await p.keyboard.press('Enter');
    await p.locator('#share-panel').waitFor({ state: 'visible' });
    assert.equal(await invite.getAttribute('aria-expanded'), 'true');
    await p.keyboard.press('Escape');
    await p.locator('#share-panel').waitFor({ state: 'hidden' });
  });

  it('replies quote the original; messages disappear after the ephemeral delay', async () => {
    const link = await alice.page.locator('#share-link').inputValue();
    const b = bob.page;
    await b.goto(`${bob.baseUrl}/${new URL(link).hash}`);
    // keyboard: focus is in the name field, Enter joins
    assert.equal(await b.evaluate(() => document.activeElement.id), 'join-name');
    await b.keyboard.type('Bob');
    await b.keyboard.press('Enter');
    await b.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await b.locator('#room-ephemeral', { hasText: '3 s' }).waitFor();

    await alice.page.getByLabel('Message', { exact: true }).focus();
    await alice.page.keyboard.type('Who brings the snacks?');
    await alice.page.keyboard.press('Enter');
    const chatWithBody = (page, re) => page.locator('#messages li[data-kind="chat"]').filter({ has: page.locator('p.body', { hasText: re }) });
    const original = chatWithBody(b, /^Who brings the snacks\?$/);
    await original.waitFor({ timeout: T });
    await original.getByRole('button', { name: 'Reply' }).click();
    await b.locator('#reply-bar', { hasText: 'Replying to Alice' }).waitFor();
    await b.keyboard.type('I do!');
    await b.keyboard.press('Enter');
    const reply = alice.page.locator('#messages li[data-kind="chat"]', { hasText: 'I do!' });
    await reply.waitFor({ timeout: T });
    assert.match(await reply.locator('blockquote.quote').textContent(), /Alice.*Who brings the snacks\?/);
    assert.ok(await noHorizontalScroll(alice.page));

    // ephemeral rooms: messages leave both screens on their own
    await original.waitFor({ state: 'detached', timeout: T });
    await reply.waitFor({ state: 'detached', timeout: T });
    await chatWithBody(alice.page, /^Who brings the snacks\?$/).waitFor({ state: 'detached', timeout: T });
  });

  it('no console error and no request to another origin', () => {
    assert.deepEqual([...alice.errors, ...bob.errors], []);
    assert.deepEqual([...alice.foreign, ...bob.foreign], []);
  });
});

// Two browser contexts create and join a room, talk both ways, react, type,
// send a 1 MB file, and use a password room (wrong, then right password).
// Every WebSocket frame is recorded and searched for the room keys, the
// plaintexts and the password; no console error and no foreign request is
// allowed. A screenshot of the conversation goes to docs/img/conversation.png.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { serverUrls, stopAllServers, REPO_ROOT } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes, secretForms, findLeaks } from '../helpers/browser.mjs';

const T = 15_000; // per-wait timeout

const MSG_A = 'Hello Bob, the eagle lands at dawn 🦅';
const MSG_B = 'Copy that Alice: bring the blue umbrella';
const MSG_PW = 'Only password holders can read this line';
const PASSWORD = 'correct horse battery staple';
const WRONG_PASSWORD = 'incorrect donkey';
const FILE_NAME = 'quarterly-secret-plans.bin';

describe('two people chatting in Chromium', { timeout: 120_000 }, () => {
  let servers;
  let browser;
  let alice;
  let bob;
  const keys = [];
  const plaintexts = [MSG_A, MSG_B, MSG_PW, FILE_NAME];

  before(async () => {
    servers = await serverUrls(2);
    browser = await launchBrowser();
    alice = await openClient(browser, servers.urls[0], { name: 'alice' });
    bob = await openClient(browser, servers.urls[1], { name: 'bob' });
  });

  after(async () => {
    await closeBrowser(browser);
    if (servers) await servers.stop();
    await stopAllServers();
  });

  async function createRoom(client, name, { password = '' } = {}) {
    const p = client.page;
    const response = await p.goto(`${client.baseUrl}/`);
    const csp = response.headers()['content-security-policy'] || '';
    for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self';", "object-src 'none'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(d), `CSP has ${d}`);
    }
    await p.getByLabel('Your name').first().fill(name);
    if (password) await p.locator('#create-password').fill(password);
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = await p.locator('#share-link').inputValue();
    const u = new URL(link);
    assert.equal(u.origin, client.origin);
    assert.equal(u.search, '');
    const code = decodeURIComponent(u.hash.slice(1));
    const [roomId, key] = code.split(':');
    assert.match(roomId, /^[A-Za-z0-9_-]{21}$/);
    assert.match(key, /^[A-Za-z0-9_-]{43}$/);
    keys.push(key);
    await p.getByRole('button', { name: 'Invite' }).click();
    return { link, code, roomId, key };
  }

  async function joinByLink(client, link, name, password = '') {
    const p = client.page;
    // The invite is opened on this client's own server (same room id, same key).
    const u = new URL(link);
    await p.goto(`${client.baseUrl}/${u.hash}`);
    assert.equal(await p.locator('#join-code').inputValue(), decodeURIComponent(u.hash.slice(1)));
    await p.locator('#join-name').fill(name);
    await p.locator('#join-password').fill(password);
    await p.getByRole('button', { name: 'Join room' }).click();
  }

  function message(client, text) {
    return client.page.locator('#messages li[data-kind="chat"]', { hasText: text });
  }

  async function send(client, text) {
    const input = client.page.getByLabel('Message', { exact: true });
    await input.fill(text);
    await input.press('Enter');
  }

  let room;

  it('Alice creates a room and gets an invite link with the key in the fragment', async () => {
    room = await createRoom(alice, 'Alice');
    // test tooling is not part of what the server serves
    const tooling = await alice.page.evaluate(async () => (await fetch('/tests/helpers/servers.mjs')).text());
    assert.ok(!tooling.includes('ARTHAS_BIN'));
    await alice.page.locator('#member-list li').first().waitFor();
    assert.equal(await alice.page.locator('#member-list li').count(), 1);
  });

  it('Bob joins from the link; the server only sees the room id', async () => {
    await joinByLink(bob, room.link, 'Bob');
    await bob.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    // the key left the address bar
    assert.equal(new URL(bob.page.url()).hash, '');
    await alice.page.locator('#messages li.system', { hasText: 'Bob joined.' }).waitFor({ timeout: T });
    await alice.page.locator('#member-list li', { hasText: 'Bob' }).waitFor({ timeout: T });
    assert.equal(await bob.page.locator('#member-list li').count(), 2);
    // member colours come from the server
    const color = await bob.page.locator('#member-list li .dot').first().evaluate((e) => getComputedStyle(e).getPropertyValue('--member-color').trim());
    assert.match(color, /^#[0-9a-f]{6}$/i);
    const join = envelopes(bob, 'sent').find((e) => e.type === 0x02);
    assert.deepEqual(Object.keys(join.data).sort(), ['name', 'password', 'roomId']);
    assert.equal(join.data.roomId, room.roomId);
    assert.equal(join.data.password, '');
  });

  it('messages go both ways with verified Ed25519 signatures', async () => {
    await send(alice, MSG_A);
    const atBob = message(bob, MSG_A);
    await atBob.waitFor({ timeout: T });
    await bob.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: MSG_A }).waitFor({ timeout: T });
    assert.equal(await atBob.locator('.author').textContent(), 'Alice');

    await send(bob, MSG_B);
    await alice.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: MSG_B }).waitFor({ timeout: T });
    // own messages are marked as signed by you, and appear once
    assert.equal(await message(alice, MSG_A).count(), 1);
    assert.equal(await message(alice, MSG_A).getAttribute('data-verify'), 'own');
    // public keys were announced as encrypted chat messages (0x03) right after joining
    assert.ok(envelopes(alice, 'sent').filter((e) => e.type === 0x03).length >= 2);
  });

  it('typing shows on the other side and clears', async () => {
    const input = bob.page.getByLabel('Message', { exact: true });
    await input.pressSequentially('thinking', { delay: 10 });
    await alice.page.locator('#typing', { hasText: 'Bob is typing…' }).waitFor({ timeout: T });
    const typing = envelopes(bob, 'sent').filter((e) => e.type === 0x05);
    assert.ok(typing.length >= 1);
    for (const e of typing) {
      assert.equal(typeof e.data.iv, 'string');
      assert.equal(typeof e.data.ciphertext, 'string');
      assert.equal(e.data.typing, undefined, 'typing state travels encrypted only');
    }
    await input.fill('');
    await alice.page.locator('#typing:empty').waitFor({ timeout: T });
  });

  it('a reaction reaches the author of the message', async () => {
    const msg = message(alice, MSG_B);
    await msg.hover();
    await msg.getByRole('button', { name: 'Add a reaction' }).click();
    await msg.getByRole('button', { name: 'React with 👍' }).click();
    await msg.locator('.chip[data-emoji="👍"][aria-pressed="true"]').waitFor({ timeout: T });
    const own = message(bob, MSG_B);
    await own.locator('.chip[data-emoji="👍"]').waitFor({ timeout: T });
    assert.equal(await own.locator('.chip[data-emoji="👍"] .count').textContent(), '1');
    const reaction = envelopes(alice, 'sent').find((e) => e.type === 0x07);
    assert.deepEqual(Object.keys(reaction.data).sort(), ['ciphertext', 'iv']);
  });

  it('a 1 MB file arrives intact and is acknowledged', async () => {
    const data = crypto.randomBytes(1024 * 1024);
    const sha = crypto.createHash('sha256').update(data).digest('hex');
    await alice.page.locator('#file-input').setInputFiles({ name: FILE_NAME, mimeType: 'application/octet-stream', buffer: data });
    const item = bob.page.locator(`#messages li[data-kind="file"][data-state="received"]`, { hasText: FILE_NAME });
    await item.waitFor({ timeout: 30_000 });
    const link = item.locator('a.file-download');
    assert.match(await link.getAttribute('href'), /^blob:/);
    const [download] = await Promise.all([bob.page.waitForEvent('download'), link.click()]);
    assert.equal(download.suggestedFilename(), FILE_NAME);
    const got = fs.readFileSync(await download.path());
    assert.equal(got.length, data.length);
    assert.equal(crypto.createHash('sha256').update(got).digest('hex'), sha);
    await alice.page.locator('#messages li[data-kind="file"] .file-status', { hasText: 'delivered to 1 of 1' }).waitFor({ timeout: T });
    const sent = envelopes(alice, 'sent');
    const meta = sent.find((e) => e.type === 0x08);
    assert.equal(typeof meta.data.iv, 'string');
    assert.ok(meta.data.ciphertext instanceof Uint8Array);
    const chunks = sent.filter((e) => e.type === 0x09);
    assert.equal(chunks.length, 16);
    for (const c of chunks) {
      assert.ok(c.data.iv instanceof Uint8Array && c.data.iv.length === 12);
      assert.equal(c.data.data.length, 65536 + 16);
    }
    assert.ok(sent.some((e) => e.type === 0x0a));
    assert.ok(envelopes(bob, 'sent').some((e) => e.type === 0x0c && e.data.transferId === meta.data.transferId));
  });

  it('saves a screenshot of the conversation', async () => {
    const out = path.join(REPO_ROOT, 'docs/img/conversation.png');
    fs.mkdirSync(path.dirname(out), { recursive: true });
    await alice.page.locator('#messages').evaluate((e) => { e.scrollTop = e.scrollHeight; });
    await alice.page.screenshot({ path: out });
    assert.ok(fs.statSync(out).size > 10_000);
  });

  it('a password room refuses the wrong password and admits the right one', async () => {
    await alice.page.getByRole('button', { name: 'Leave' }).click();
    await bob.page.getByRole('button', { name: 'Leave' }).click();
    await alice.page.locator('#landing').waitFor();
    const pwRoom = await createRoom(alice, 'Alice', { password: PASSWORD });
    await alice.page.locator('#room-lock').waitFor();

    await joinByLink(bob, pwRoom.link, 'Bob', WRONG_PASSWORD);
    await bob.page.locator('#landing-error', { hasText: 'Wrong password.' }).waitFor({ timeout: T });
    assert.equal(await bob.page.locator('#chat').isVisible(), false);

    await bob.page.locator('#join-password').fill(PASSWORD);
    await bob.page.getByRole('button', { name: 'Join room' }).click();
    await bob.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await bob.page.locator('#room-lock').waitFor();

    const joins = envelopes(bob, 'sent').filter((e) => e.type === 0x02 && e.data.roomId === pwRoom.roomId);
    assert.equal(joins.length, 2);
    const right = crypto.createHash('sha256').update(PASSWORD).digest('hex');
    const wrong = crypto.createHash('sha256').update(WRONG_PASSWORD).digest('hex');
    assert.deepEqual(joins.map((e) => e.data.password), [wrong, right]);
    const create = envelopes(alice, 'sent').filter((e) => e.type === 0x01).pop();
    assert.equal(create.data.password, right);

    await send(bob, MSG_PW);
    await alice.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: MSG_PW }).waitFor({ timeout: T });
  });

  it('no frame carries a room key, a plaintext or the password', () => {
    const secrets = [
      ...keys.map((k, i) => ({ label: `room key ${i}`, forms: secretForms(k, { rawBytes: Buffer.from(k, 'base64url') }) })),
      ...plaintexts.map((m) => ({ label: `plaintext "${m}"`, forms: secretForms(m) })),
      { label: 'password', forms: secretForms(PASSWORD) },
      { label: 'wrong password', forms: secretForms(WRONG_PASSWORD) },
    ];
    const total = alice.frames.length + bob.frames.length;
    assert.ok(total > 40, `recorded ${total} frames`);
    assert.ok(alice.frames.some((f) => f.dir === 'received') && bob.frames.some((f) => f.dir === 'received'));
    assert.deepEqual(findLeaks([alice, bob], secrets), []);
    // and every frame is a binary MessagePack envelope
    for (const rec of [alice, bob]) for (const e of envelopes(rec)) assert.notEqual(e.type, -1);
  });

  it('no console error and no request to another origin', () => {
    assert.deepEqual([...alice.errors, ...bob.errors], []);
    assert.deepEqual([...alice.foreign, ...bob.foreign], []);
    assert.ok(alice.sockets.every((u) => u.endsWith('/ws')));
  });
});

// The room owner removes a member and the room key rotates
// (docs/SECURITY.md §5), with three browsers on three relays of a real
// cluster (Redis, a gateway, three relays): the kicked browser is out, cannot
// read what follows (it receives nothing, and its old key opens none of the
// new ciphertexts) and cannot rejoin with the old link; the other two keep
// chatting on the new key; the new invite link lets a fourth browser in.
// Every frame is recorded and searched for both room keys and the
// plaintexts.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startCluster, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes, secretForms, findLeaks } from '../helpers/browser.mjs';

const T = 20_000;
const BEFORE = 'Before the kick: the plan is on page four';
const AFTER = 'After the kick: Bob must not read this line';
const REPLY = 'Carol on the new key: understood';
const WELCOME = 'Dave joined with the new invite link';

/** AES-256-GCM decryption of a chat frame's iv/ciphertext with a raw key (Node). */
function opens(rawKey, ivB64, ciphertextB64) {
  const iv = Buffer.from(ivB64, 'base64url');
  const data = Buffer.from(ciphertextB64, 'base64url');
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', rawKey, iv);
    d.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([d.update(data.subarray(0, data.length - 16)), d.final()]).toString('utf8');
  } catch {
    return null;
  }
}

describe('the owner kicks a member and the key rotates, across three relays', { timeout: 180_000 }, () => {
  let cluster;
  let browser;
  let alice;
  let bob;
  let carol;
  let dave;
  let oldLink;
  let newLink;
  let thirdLink;

  before(async () => {
    cluster = await startCluster(3);
    browser = await launchBrowser();
    alice = await openClient(browser, cluster.urls[0], { name: 'alice' });
    bob = await openClient(browser, cluster.urls[1], { name: 'bob' });
    carol = await openClient(browser, cluster.urls[2], { name: 'carol' });
    dave = await openClient(browser, cluster.urls[0], { name: 'dave' });
  });

  after(async () => {
    await closeBrowser(browser);
    if (cluster) await cluster.stop();
    await stopAllServers();
  });

  const message = (client, text) => client.page.locator('#messages li[data-kind="chat"]', { hasText: text });

  async function send(client, text) {
    const input = client.page.getByLabel('Message', { exact: true });
    await input.fill(text);
    await input.press('Enter');
  }

  async function inviteLink(client) {
    const p = client.page;
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = await p.locator('#share-link').inputValue();
    await p.getByRole('button', { name: 'Invite' }).click();
    return link;
  }

  const codeOf = (link) => decodeURIComponent(new URL(link).hash.slice(1)).split(':');

  async function join(client, link, name) {
    const p = client.page;
    await p.goto(`${client.baseUrl}/${new URL(link).hash}`);
    await p.locator('#join-name').fill(name);
    await p.getByRole('button', { name: 'Join room' }).click();
  }

  it('Alice creates an owned room; Bob and Carol join on other relays', async () => {
    const p = alice.page;
    await p.goto(`${alice.baseUrl}/`);
    await p.getByLabel('Your name').first().fill('Alice');
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.locator('#room-owner').waitFor({ state: 'visible' });
    assert.equal(await p.locator('#room-epoch').textContent(), 'Key epoch 0');
    oldLink = await inviteLink(alice);
    const [, , , , epoch, owner] = codeOf(oldLink);
    assert.equal(epoch, '0');
    assert.match(owner, /^[0-9a-f]{32}$/, 'the invite names the owner key');
    const create = envelopes(alice, 'sent').find((e) => e.type === 0x01);
    assert.match(create.data.ownerHash, /^[0-9a-f]{64}$/, 'only the hash of the owner secret is sent');

    await join(bob, oldLink, 'Bob');
    await bob.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await join(carol, oldLink, 'Carol');
    await carol.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    // Everyone learned everyone's signed keys: fingerprints show in the member lists.
    for (const c of [alice, bob, carol]) {
      await c.page.locator('#member-list li .member-fp').nth(1).waitFor({ timeout: T });
    }
    assert.equal(await carol.page.locator('#member-list li .kick-btn').count(), 0, 'only the owner can remove');
    await send(alice, BEFORE);
    for (const c of [bob, carol]) {
      await c.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: BEFORE }).waitFor({ timeout: T });
    }
  });

  it('Alice removes Bob: Bob is out with the reason, Carol moves to the new key', async () => {
    await alice.page.getByRole('button', { name: 'Remove Bob' }).click();
    await bob.page.locator('#closed-bar', { hasText: 'You were removed from this room by its owner.' }).waitFor({ timeout: T });
    await carol.page.locator('#messages li.system', { hasText: 'Bob was removed by the room owner.' }).waitFor({ timeout: T });
    await carol.page.locator('#messages li.system', { hasText: 'changed the room key (epoch 1)' }).waitFor({ timeout: T });
    assert.equal(await carol.page.locator('#room-epoch').textContent(), 'Key epoch 1');
    assert.equal(await alice.page.locator('#room-epoch').textContent(), 'Key epoch 1');
    await alice.page.locator('#member-list li', { hasText: 'Bob' }).waitFor({ state: 'detached', timeout: T });
    // The owner's frames: new join password, the kick, one directed key (to Carol).
    const sent = envelopes(alice, 'sent');
    assert.ok(sent.some((e) => e.type === 0x42 && /^[0-9a-f]{64}$/.test(e.data.password)));
    assert.ok(sent.some((e) => e.type === 0x40 && e.data.reason === 'kicked'));
    const directs = sent.filter((e) => e.type === 0x41);
    assert.equal(directs.length, 1);
    assert.deepEqual(Object.keys(directs[0].data).sort(), ['ciphertext', 'iv', 'to']);
  });

  it('the others keep chatting on the new key; Bob neither receives nor could open it', async () => {
    const bobFramesBefore = bob.frames.length;
    await send(alice, AFTER);
    await message(carol, AFTER).waitFor({ timeout: T });
    await send(carol, REPLY);
    await alice.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: REPLY }).waitFor({ timeout: T });
    await carol.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: AFTER }).waitFor({ timeout: T });
    // Bob's socket got nothing of the room after the kick...
    const late = envelopes({ frames: bob.frames.slice(bobFramesBefore) }, 'received').filter((e) => e.type === 0x14);
    assert.deepEqual(late, []);
    assert.equal(await message(bob, AFTER).count(), 0);
    // ...and the old key (Bob's) opens none of the new ciphertexts Carol received.
    const oldKey = Buffer.from(codeOf(oldLink)[1], 'base64url');
    const newChats = envelopes(carol, 'received').filter((e) => e.type === 0x14 && e.data.senderId !== 'system');
    const opened = newChats.map((e) => opens(oldKey, e.data.iv, e.data.ciphertext)).filter((t) => t !== null);
    assert.ok(opened.some((t) => t.includes(BEFORE)), 'the old key opens what was sent before');
    assert.ok(!opened.some((t) => t.includes(AFTER)), 'the old key opens nothing sent after');
    newLink = await inviteLink(alice);
    const newKey = Buffer.from(codeOf(newLink)[1], 'base64url');
    assert.ok(newChats.some((e) => (opens(newKey, e.data.iv, e.data.ciphertext) || '').includes(AFTER)));
  });

  it('the old link no longer joins', async () => {
    await bob.page.getByRole('button', { name: 'Back to start' }).click();
    await join(bob, oldLink, 'Bob');
    await bob.page.locator('#landing-error', { hasText: 'Wrong password.' }).waitFor({ timeout: T });
    assert.equal(await bob.page.locator('#chat').isVisible(), false);
  });

  it('the new invite link works', async () => {
    const [, , , , epoch, owner] = codeOf(newLink);
    assert.equal(epoch, '1');
    assert.equal(owner, codeOf(oldLink)[5]);
    await join(dave, newLink, 'Dave');
    await dave.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    assert.equal(await dave.page.locator('#room-epoch').textContent(), 'Key epoch 1');
    await dave.page.locator('#member-list li .member-fp').nth(1).waitFor({ timeout: T });
    await send(alice, WELCOME);
    await dave.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: WELCOME }).waitFor({ timeout: T });
    await message(carol, WELCOME).waitFor({ timeout: T });
  });

  it('the owner can also rotate on request: everyone moves to the next epoch', async () => {
    await alice.page.getByRole('button', { name: 'New key' }).click();
    for (const c of [carol, dave]) {
      await c.page.locator('#messages li.system', { hasText: 'changed the room key (epoch 2)' }).waitFor({ timeout: T });
      assert.equal(await c.page.locator('#room-epoch').textContent(), 'Key epoch 2');
    }
    assert.equal(await carol.page.locator('#member-list li').count(), 3, 'nobody was removed');
    await send(dave, 'Dave on epoch two');
    await alice.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: 'Dave on epoch two' }).waitFor({ timeout: T });
    await message(carol, 'Dave on epoch two').waitFor({ timeout: T });
    thirdLink = await inviteLink(alice);
    assert.equal(codeOf(thirdLink)[4], '2');
    assert.equal(await carol.page.locator('#share-link').inputValue(), thirdLink.replace(alice.origin, carol.origin));
  });

  it('no frame carries a room key or a plaintext', () => {
    const keys = [codeOf(oldLink)[1], codeOf(newLink)[1], codeOf(thirdLink)[1]];
    const secrets = [
      ...keys.map((k, i) => ({ label: `room key ${i}`, forms: secretForms(k, { rawBytes: Buffer.from(k, 'base64url') }) })),
      ...[BEFORE, AFTER, REPLY, WELCOME, 'Dave on epoch two'].map((m) => ({ label: `plaintext "${m}"`, forms: secretForms(m) })),
    ];
    assert.deepEqual(findLeaks([alice, bob, carol, dave], secrets), []);
  });

  it('no console error and no request to another origin', () => {
    assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors, ...dave.errors], []);
    assert.deepEqual([...alice.foreign, ...bob.foreign, ...carol.foreign, ...dave.foreign], []);
  });
});

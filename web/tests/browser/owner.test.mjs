// The room owner's life cycle (docs/SECURITY.md §5.1, §5.3), in Chromium
// against the real server: a room created with "New room key when someone
// leaves" rotates when a member leaves (the old link stops joining); the
// owner reloads its tab and, from the secret and signing key its tab kept in
// sessionStorage, is the owner again and removes a member (the others accept
// the new key); the owner hands the room over to another member, who then
// removes the old owner, while the old owner's secret gets E008 from the
// server.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { serverUrls, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes, secretForms, findLeaks, waitUntil } from '../helpers/browser.mjs';
import { C, S, encodeEnvelope, decodeEnvelope } from '../../js/protocol.js';
import { joinPasswordOf } from '../../js/rekey.js';

const T = 20_000;

describe('owner: rotation when someone leaves, reload, hand-over', { timeout: 240_000 }, () => {
  let servers;
  let browser;
  let alice;
  let bob;
  let carol;
  let dave;
  let firstLink;
  let roomId;

  before(async () => {
    servers = await serverUrls(4);
    browser = await launchBrowser();
    alice = await openClient(browser, servers.urls[0], { name: 'alice' });
    bob = await openClient(browser, servers.urls[1], { name: 'bob' });
    carol = await openClient(browser, servers.urls[2], { name: 'carol' });
    dave = await openClient(browser, servers.urls[3], { name: 'dave' });
  });

  after(async () => {
    await closeBrowser(browser);
    if (servers) await servers.stop();
    await stopAllServers();
  });

  const epochOf = (client) => client.page.locator('#room-epoch').textContent();
  const codeOf = (link) => decodeURIComponent(new URL(link).hash.slice(1)).split(':');
  const systemLine = (client, text) => client.page.locator('#messages li.system', { hasText: text });

  async function inviteLink(client) {
    const p = client.page;
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = await p.locator('#share-link').inputValue();
    await p.getByRole('button', { name: 'Invite' }).click();
    return link;
  }

  async function join(client, link, name) {
    const p = client.page;
    await p.goto(`${client.baseUrl}/${new URL(link).hash}`);
    await p.locator('#join-name').fill(name);
    await p.getByRole('button', { name: 'Join room' }).click();
  }

  /** Waits until `client` lists `n` members and knows every other one's signed key. */
  async function knowsEveryone(client, n) {
    await waitUntil(async () => (await client.page.locator('#member-list li').count()) === n
      && (await client.page.locator('#member-list li .member-fp').count()) === n - 1, { timeout: T, what: `${client.name} to know ${n} members' keys` });
  }

  async function send(client, text) {
    const input = client.page.getByLabel('Message', { exact: true });
    await input.fill(text);
    await input.press('Enter');
  }

  it('Alice creates a room that changes its key when someone leaves; three join', async () => {
    const p = alice.page;
    await p.goto(`${alice.baseUrl}/`);
    await p.getByLabel('Your name').first().fill('Alice');
    await p.getByLabel('New room key when someone leaves').check();
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    assert.equal(await p.getByRole('checkbox', { name: 'New key when someone leaves' }).isChecked(), true, 'the setting shows in the room');
    firstLink = await inviteLink(alice);
    roomId = codeOf(firstLink)[0];
    await join(bob, firstLink, 'Bob');
    await join(carol, firstLink, 'Carol');
    await join(dave, firstLink, 'Dave');
    for (const c of [alice, bob, carol, dave]) await knowsEveryone(c, 4);
    for (const c of [bob, carol, dave]) {
      assert.equal(await c.page.locator('#owner-settings').isVisible(), false, 'only the owner sees the setting');
    }
  });

  it('Dave leaves: the others move to the next key, and the old link no longer joins', async () => {
    await dave.page.getByRole('button', { name: 'Leave' }).click();
    for (const c of [alice, bob, carol]) {
      await systemLine(c, 'Dave left.').waitFor({ timeout: T });
      await waitUntil(async () => (await epochOf(c)) === 'Key epoch 1', { timeout: T, what: `${c.name} at epoch 1` });
    }
    await systemLine(alice, 'Dave left and this room changes its key then.').waitFor({ timeout: T });
    await send(carol, 'Carol on the key after Dave left');
    for (const c of [alice, bob]) {
      await c.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: 'Carol on the key after Dave left' }).waitFor({ timeout: T });
    }
    await join(dave, firstLink, 'Dave');
    await dave.page.locator('#landing-error', { hasText: 'Wrong password.' }).waitFor({ timeout: T });
    assert.equal(await dave.page.locator('#chat').isVisible(), false);
  });

  it('the owner secret is kept in this tab only (sessionStorage, scoped to the room)', async () => {
    const stored = await alice.page.evaluate((id) => ({
      session: sessionStorage.getItem(`arthas.owner.${id}`),
      sessionKeys: Object.keys(sessionStorage),
      local: localStorage.length,
    }), roomId);
    assert.equal(stored.local, 0, 'nothing in localStorage');
    assert.deepEqual(stored.sessionKeys, [`arthas.owner.${roomId}`]);
    const record = JSON.parse(stored.session);
    assert.match(record.secret, /^[0-9a-f]{64}$/);
    assert.equal(record.autoRotate, true);
    assert.equal(codeOf(`http://x/#${record.code}`)[4], '1', 'the record follows the rotation');
    for (const c of [bob, carol]) {
      assert.equal(await c.page.evaluate(() => sessionStorage.length + localStorage.length), 0, 'members keep nothing');
    }
  });

  it('Alice reloads her tab, is the owner again and removes Carol; Bob takes the new key', async () => {
    const p = alice.page;
    await p.reload();
    await p.locator('#owner-resume').waitFor({ state: 'visible', timeout: T });
    assert.equal(await p.locator('#join-name').inputValue(), 'Alice');
    await p.getByRole('button', { name: 'Join room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await systemLine(alice, 'You are this room’s owner again').waitFor({ timeout: T });
    await p.locator('#room-owner').waitFor({ state: 'visible' });
    assert.equal(await p.getByRole('checkbox', { name: 'New key when someone leaves' }).isChecked(), true, 'the setting survived too');
    assert.equal(await epochOf(alice), 'Key epoch 1');
    await knowsEveryone(alice, 3);
    await knowsEveryone(bob, 3);
    await knowsEveryone(carol, 3);
    await p.getByRole('button', { name: 'Remove Carol' }).click();
    await carol.page.locator('#closed-bar', { hasText: 'You were removed from this room by its owner.' }).waitFor({ timeout: T });
    // Bob accepts the key: the reloaded owner signs with the key its link names.
    await systemLine(bob, 'changed the room key (epoch 2)').waitFor({ timeout: T });
    assert.equal(await epochOf(bob), 'Key epoch 2');
    assert.equal(await epochOf(alice), 'Key epoch 2');
  });

  it('Carol rejoins; Alice hands the room over to Bob', async () => {
    await carol.page.getByRole('button', { name: 'Back to start' }).click();
    await join(carol, await inviteLink(alice), 'Carol');
    await carol.page.locator('#chat').waitFor({ state: 'visible', timeout: T });
    for (const c of [alice, bob, carol]) await knowsEveryone(c, 3);
    await alice.page.getByRole('button', { name: 'Make Bob the owner' }).click();
    await systemLine(bob, 'handed this room over to you').waitFor({ timeout: T });
    await systemLine(carol, 'handed this room over to Bob').waitFor({ timeout: T });
    await systemLine(alice, 'You handed the room over to Bob').waitFor({ timeout: T });
    for (const c of [alice, bob, carol]) assert.equal(await epochOf(c), 'Key epoch 3');
    await bob.page.locator('#room-owner').waitFor({ state: 'visible' });
    assert.equal(await bob.page.getByRole('checkbox', { name: 'New key when someone leaves' }).isChecked(), true, 'the setting goes with the room');
    await alice.page.locator('#room-owner').waitFor({ state: 'hidden' });
    assert.equal(await alice.page.locator('#member-list .kick-btn').count(), 0, 'the old owner has no Remove buttons');
    assert.equal(await alice.page.evaluate(() => sessionStorage.length), 0, 'the old owner forgot the secret');
    assert.equal(await bob.page.evaluate((id) => sessionStorage.getItem(`arthas.owner.${id}`) !== null, roomId), true);
    // Invite links now name Bob's signing key as the owner's, wherever they are shown.
    const bobLink = await inviteLink(bob);
    assert.notEqual(codeOf(bobLink)[5], codeOf(firstLink)[5]);
    assert.equal(codeOf(await inviteLink(carol))[5], codeOf(bobLink)[5]);
    assert.equal(codeOf(await inviteLink(alice))[5], codeOf(bobLink)[5]);
    // One SetRoomSecret sets the new password and the heir's hash; the heir's secret travels only sealed.
    const handover = envelopes(alice, 'sent').filter((e) => e.type === C.SET_ROOM_SECRET).at(-1);
    assert.match(handover.data.ownerHash, /^[0-9a-f]{64}$/);
    assert.match(handover.data.password, /^[0-9a-f]{64}$/);
    const heirSecret = await bob.page.evaluate((id) => JSON.parse(sessionStorage.getItem(`arthas.owner.${id}`)).secret, roomId);
    const leaks = findLeaks([alice, carol], [{ label: 'the new owner secret', forms: secretForms(heirSecret) }]);
    assert.deepEqual(leaks, [], 'only the new owner itself ever sends its secret');
  });

  it('the new owner removes the old one; Carol follows the new owner\'s key', async () => {
    await bob.page.getByRole('button', { name: 'Remove Alice' }).click();
    await alice.page.locator('#closed-bar', { hasText: 'You were removed from this room by its owner.' }).waitFor({ timeout: T });
    await systemLine(carol, 'changed the room key (epoch 4)').waitFor({ timeout: T });
    assert.equal(await epochOf(carol), 'Key epoch 4');
    await send(bob, 'Bob owns the room now');
    await carol.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: 'Bob owns the room now' }).waitFor({ timeout: T });
  });

  it('the old owner secret is refused by the server (E008)', async () => {
    const oldSecret = envelopes(alice, 'sent').filter((e) => e.type === C.SET_ROOM_SECRET).at(-1).data.owner;
    assert.match(oldSecret, /^[0-9a-f]{64}$/);
    const link = await inviteLink(bob);
    const password = await joinPasswordOf(codeOf(link)[1], roomId);
    const ws = new WebSocket(`${servers.urls[0].replace(/^http/, 'ws')}/ws`);
    ws.binaryType = 'nodebuffer';
    const received = [];
    ws.on('message', (m) => {
      try {
        received.push(decodeEnvelope(new Uint8Array(m)));
      } catch {
        // not an envelope
      }
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    try {
      ws.send(encodeEnvelope(C.JOIN_ROOM, { roomId, name: 'Mallory', password }));
      const joined = await waitUntil(() => received.find((e) => e.type === S.ROOM_JOINED), { timeout: T, what: 'RoomJoined' });
      const carolId = joined.data.members.find((m) => m.name === 'Carol').id;
      ws.send(encodeEnvelope(C.KICK, { owner: oldSecret, id: carolId, reason: 'kicked' }));
      const refused = await waitUntil(() => received.find((e) => e.type === S.ERROR), { timeout: T, what: 'the refusal' });
      assert.equal(refused.data.code, 'E008');
      ws.send(encodeEnvelope(C.SET_ROOM_SECRET, { owner: oldSecret, ownerHash: 'cd'.repeat(32) }));
      await waitUntil(() => received.filter((e) => e.type === S.ERROR).length === 2, { timeout: T, what: 'the second refusal' });
      assert.equal(received.filter((e) => e.type === S.ERROR)[1].data.code, 'E008');
    } finally {
      ws.close();
    }
    // Carol is still in the room, and Bob is still its owner.
    await send(bob, 'still here after the refused kick');
    await carol.page.locator('#messages li[data-kind="chat"]', { hasText: 'still here after the refused kick' }).waitFor({ timeout: T });
  });

  it('no console error and no request to another origin', () => {
    assert.deepEqual([...alice.errors, ...bob.errors, ...carol.errors, ...dave.errors], []);
    assert.deepEqual([...alice.foreign, ...bob.foreign, ...carol.foreign, ...dave.foreign], []);
  });
});

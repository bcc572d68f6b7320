// Public rooms in Chromium: the create form's public fields (the reference's
// validation texts inline, the warning that the key is published), a public
// room created in one browser and found in another by tag and by text,
// joined with one click, and chatted in; the daily topic listed and
// joinable; links from the original client (#/join/{code}); the directory's
// auto-refresh pace (with the page's clock under the test's control); a
// phone viewport and keyboard use. One all-in-one server, daily topic on.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, stopAllServers } from '../helpers/servers.mjs';
import { closeBrowser, launchBrowser, openClient, envelopes, waitUntil } from '../helpers/browser.mjs';

const T = 15_000;
const TITLE = 'Night owls of Lisbon';
const DESCRIPTION = 'Late talk about fado, trams and custard tarts';
const TAGS = 'fado late-night';
const PHONE = { width: 390, height: 844 };

function card(client, title) {
  return client.page.locator('#directory-list li.room-card', { has: client.page.locator('h3', { hasText: title }) });
}

async function send(client, text) {
  const input = client.page.getByLabel('Message', { exact: true });
  await input.fill(text);
  await input.press('Enter');
}

function chatLine(client, text) {
  return client.page.locator('#messages li[data-kind="chat"][data-verify="verified"]', { hasText: text });
}

/** /api/hub requests a page made (recorded from the start). */
function hubRequests(client) {
  return client.hub.length;
}

describe('public rooms: directory, public creation, daily topic', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  const clients = [];
  let room; // Alice's public room: {roomId, key, code}

  async function client(name, options = {}) {
    const c = await openClient(browser, server.url, { name, ...options });
    c.hub = [];
    c.page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/api/hub') c.hub.push({ url: r.url(), at: Date.now() });
    });
    clients.push(c);
    return c;
  }

  before(async () => {
    // Many browsers share 127.0.0.1 here: the per-IP directory limit is raised
    // for this suite (the 429 handling has its own test below).
    server = await startServer({ args: ['--hub-requests-per-minute', '1000'] });
    browser = await launchBrowser();
    alice = await client('alice');
    bob = await client('bob');
  });

  after(async () => {
    await closeBrowser(browser);
    if (server) await server.stop();
    await stopAllServers();
  });

  it('the public fields show the reference validation texts inline and send nothing', async () => {
    const p = alice.page;
    await p.goto(`${server.url}/`);
    await p.locator('#create-name').fill('Alice');
    assert.equal(await p.locator('#public-fields').isVisible(), false);
    await p.getByLabel('List it in the public directory').check();
    await p.locator('#public-warning').waitFor();
    assert.match(await p.locator('#public-warning').textContent(), /publishes this room’s key/);

    const submit = () => p.getByRole('button', { name: 'Create encrypted room' }).click();
    const shown = async (id) => ((await p.locator(`#${id}`).isVisible()) ? p.locator(`#${id}`).textContent() : null);

    await p.locator('#public-tags').fill('ok a_b');
    await submit();
    assert.equal(await shown('public-title-error'), 'title is required');
    assert.equal(await shown('public-tags-error'), 'tag "a_b" contains invalid characters (alphanumeric and hyphens only)');
    assert.equal(await shown('public-description-error'), null);
    assert.equal(await p.evaluate(() => document.activeElement.id), 'public-title', 'focus goes to the first field in error');
    assert.equal(await p.locator('#public-title').getAttribute('aria-invalid'), 'true');

    await p.locator('#public-title').fill('<b></b>');
    await submit();
    assert.equal(await shown('public-title-error'), 'title is required', 'markup alone is no title');
    await p.locator('#public-title').fill('x'.repeat(51));
    await p.locator('#public-description').fill('d'.repeat(201));
    await p.locator('#public-tags').fill('a b c d e f');
    await submit();
    assert.equal(await shown('public-title-error'), 'title must be 50 characters or less');
    assert.equal(await shown('public-description-error'), 'description must be 200 characters or less');
    assert.equal(await shown('public-tags-error'), 'maximum 5 tags allowed');
    await p.locator('#public-tags').fill('x'.repeat(21));
    assert.equal(await shown('public-tags-error'), 'each tag must be 1-20 characters', 're-checked while typing');
    await p.locator('#public-title').fill('x'.repeat(50));
    assert.equal(await shown('public-title-error'), null, 'the error clears once fixed');

    assert.equal(await p.locator('#chat').isVisible(), false);
    assert.deepEqual(envelopes(alice, 'sent').filter((e) => e.type === 0x01), [], 'no CreateRoom was sent');
  });

  it('Alice creates a public room: its key goes with the listing, by design', async () => {
    const p = alice.page;
    await p.locator('#public-title').fill(`  ${TITLE} `);
    await p.locator('#public-description').fill(DESCRIPTION);
    await p.locator('#public-tags').fill(TAGS);
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.locator('#room-public').waitFor();
    await p.locator('#messages li.system', { hasText: 'anyone can read it' }).waitFor();
    const link = await p.locator('#share-link').inputValue();
    const code = decodeURIComponent(new URL(link).hash.slice(1));
    const [roomId, key] = code.split(':');
    room = { roomId, key, code };
    const create = envelopes(alice, 'sent').find((e) => e.type === 0x01);
    assert.equal(create.data.public, true);
    assert.equal(create.data.title, TITLE, 'sent sanitised');
    assert.equal(create.data.description, DESCRIPTION);
    assert.deepEqual(create.data.tags, ['fado', 'late-night']);
    assert.equal(create.data.keyEncoded, key);
    // no E010/E011 followed
    assert.ok(!envelopes(alice, 'received').some((e) => e.type === 0x17));
  });

  it('Bob finds it by tag and by text, with its figures', async () => {
    const p = bob.page;
    await p.goto(`${server.url}/`);
    await p.locator('#directory-list li.room-card').first().waitFor({ timeout: T });
    await p.locator('#directory-tag').fill('FADO'); // tags match ignoring case
    await card(bob, TITLE).waitFor({ timeout: T });
    await waitUntil(async () => (await p.locator('#directory-list li.room-card').count()) === 1, { what: 'only the fado room' });
    const c = card(bob, TITLE);
    assert.equal(await c.locator('.room-card-desc').textContent(), DESCRIPTION);
    assert.equal(await c.locator('.room-card-members').textContent(), '1 person here');
    // 24 hours from creation: exactly 1 d 0 h when Bob looks within the second the room was created
    assert.match(await c.locator('.room-card-expiry').textContent(), /^Expires in (23 h \d+ min|1 d 0 h)$/, 'created for 24 hours');
    assert.deepEqual(await c.locator('.tag').allTextContents(), ['#fado', '#late-night']);
    assert.equal(await c.locator('.badge-password').count(), 0);
    assert.match(await p.locator('#directory-status').textContent(), /^1 public room match/);

    await p.locator('#directory-tag').fill('');
    await p.locator('#directory-q').fill('custard');
    await waitUntil(() => bob.hub.some((h) => new URL(h.url).searchParams.get('q') === 'custard'), { what: 'the text search' });
    await p.locator('#directory-status', { hasText: /^1 public room match/ }).waitFor({ timeout: T });
    assert.equal(await p.locator('#directory-list li.room-card').count(), 1);
    assert.equal(await c.count(), 1);
    await p.locator('#directory-q').fill('no such words anywhere');
    await p.locator('#directory-status', { hasText: 'No public rooms match.' }).waitFor({ timeout: T });
    await p.locator('#directory-q').fill('');
    await p.locator('#directory-list li.room-card[data-daily="true"]').waitFor({ timeout: T });
    const urls = bob.hub.map((h) => new URL(h.url).searchParams);
    assert.ok(urls.some((q) => q.get('tag') === 'FADO'));
    assert.ok(urls.some((q) => q.get('q') === 'custard'));
  });

  it('Bob joins with one click, and they chat', async () => {
    const p = bob.page;
    await p.locator('#directory-name').fill('Bob');
    const joins = () => envelopes(bob, 'sent').filter((e) => e.type === 0x02);
    assert.equal(joins().length, 0);
    await p.getByRole('button', { name: `Join ${TITLE}` }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.locator('#room-public').waitFor();
    assert.equal(await p.locator('#room-title').textContent(), TITLE);
    const [join] = joins();
    assert.deepEqual(Object.keys(join.data).sort(), ['name', 'password', 'roomId']);
    assert.equal(join.data.roomId, room.roomId);
    await alice.page.locator('#messages li.system', { hasText: 'Bob joined.' }).waitFor({ timeout: T });
    await send(alice, 'Boa noite, Bob');
    await chatLine(bob, 'Boa noite, Bob').waitFor({ timeout: T });
    await send(bob, 'Obrigado, Alice');
    await chatLine(alice, 'Obrigado, Alice').waitFor({ timeout: T });
  });

  it('the daily topic is listed and joinable', async () => {
    const p = bob.page;
    await p.getByRole('button', { name: 'Leave' }).click();
    await p.locator('#landing').waitFor();
    const daily = p.locator('#directory-list li.room-card[data-daily="true"]');
    await daily.waitFor({ timeout: T });
    await daily.locator('.badge-daily', { hasText: 'Daily topic' }).waitFor();
    // a click on its tag filters by it
    await daily.getByRole('button', { name: 'Show rooms tagged daily-topic' }).click();
    await waitUntil(async () => (await p.locator('#directory-list li.room-card').count()) === 1, { what: 'only the daily topic' });
    assert.equal(await p.locator('#directory-tag').inputValue(), 'daily-topic');
    const title = await daily.locator('h3').textContent();
    assert.match(await daily.locator('.room-card-expiry').textContent(), /^Expires in /);
    await daily.getByRole('button', { name: `Join ${title}` }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await p.locator('#room-public').waitFor();
    await p.locator('#room-expiry[data-state="later"]').waitFor();
    assert.equal(await p.locator('#member-list li').count(), 1);
    await send(bob, 'First in today');
    await p.getByRole('button', { name: 'Leave' }).click();
    await p.locator('#landing').waitFor();
    // still listed once empty
    await daily.locator('.room-card-members', { hasText: 'Nobody here yet' }).waitFor({ timeout: T });
  });

  it('a link from the original client (#/join/{code}) opens in this client', async () => {
    const carol = await client('carol');
    const p = carol.page;
    await p.goto(`${server.url}/#/join/${encodeURIComponent(room.code)}`);
    assert.equal(await p.locator('#join-code').inputValue(), room.code);
    assert.equal(await p.evaluate(() => document.activeElement.id), 'join-name');
    await p.keyboard.type('Carol');
    await p.keyboard.press('Enter');
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    assert.equal(new URL(p.url()).hash, '', 'the key left the address bar');
    await alice.page.locator('#messages li.system', { hasText: 'Carol joined.' }).waitFor({ timeout: T });
    // ours keeps producing one form: #{code}
    await p.getByRole('button', { name: 'Invite' }).click();
    const link = new URL(await p.locator('#share-link').inputValue());
    assert.equal(link.hash, `#${room.code}`);
    await p.getByRole('button', { name: 'Leave' }).click();
  });

  it('a password room asks for its password on the card and shows a refusal there', async () => {
    const dave = await client('dave');
    const p = dave.page;
    await p.goto(`${server.url}/`);
    await p.locator('#create-name').fill('Dave');
    await p.locator('#create-password').fill('sesame');
    await p.getByLabel('List it in the public directory').check();
    await p.locator('#public-title').fill('Locked cellar');
    await p.getByRole('button', { name: 'Create encrypted room' }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });

    const erin = await client('erin');
    const e = erin.page;
    await e.goto(`${server.url}/`);
    const c = card(erin, 'Locked cellar');
    await c.waitFor({ timeout: T });
    await c.locator('.badge-password').waitFor();
    await e.getByRole('button', { name: 'Join Locked cellar' }).click();
    await e.locator('#directory-name-error', { hasText: 'Please enter a name' }).waitFor();
    assert.equal(await e.evaluate(() => document.activeElement.id), 'directory-name');
    await e.locator('#directory-name').fill('Erin');
    await e.getByRole('button', { name: 'Join Locked cellar' }).click();
    await c.locator('.room-card-error', { hasText: 'enter it to join' }).waitFor();
    await e.getByLabel('Password for Locked cellar').fill('wrong');
    await e.getByLabel('Password for Locked cellar').press('Enter');
    await c.locator('.room-card-error', { hasText: 'Wrong password.' }).waitFor({ timeout: T });
    assert.equal(await e.locator('#chat').isVisible(), false);
    await e.getByLabel('Password for Locked cellar').fill('sesame');
    await e.getByRole('button', { name: 'Join Locked cellar' }).click();
    await e.locator('#chat').waitFor({ state: 'visible', timeout: T });
    await e.locator('#room-lock').waitFor();
  });

  it('the list refreshes by itself every 30 s while on screen, and not at all from inside a room', async () => {
    const frank = await client('frank');
    const p = frank.page;
    await p.clock.install();
    await p.goto(`${server.url}/`);
    const c = card(frank, TITLE);
    await c.waitFor({ timeout: T });
    // From here the page's time moves only when the test says so.
    await p.clock.pauseAt((await p.evaluate(() => Date.now())) + 10);
    const members = () => c.locator('.room-card-members').textContent();
    assert.equal(await members(), '1 person here');
    const start = hubRequests(frank);
    // Hank joins Alice's room: the next automatic refresh shows it.
    const hank = await client('hank');
    await hank.page.goto(`${server.url}/#${room.code}`);
    await hank.page.locator('#join-name').fill('Hank');
    await hank.page.locator('#join-name').press('Enter');
    await alice.page.locator('#messages li.system', { hasText: 'Hank joined.' }).waitFor({ timeout: T });
    assert.equal(await members(), '1 person here', 'not refreshed yet');
    // The first refresh comes within 30 s of the first load ...
    await p.clock.runFor(30_000);
    await waitUntil(() => hubRequests(frank) === start + 1, { what: 'the first refresh' });
    await c.locator('.room-card-members', { hasText: '2 people here' }).waitFor({ timeout: T });
    // ... and every next one exactly 30 s after the one before: 2 a minute.
    for (let i = 2; i <= 6; i++) {
      await p.locator('#directory[aria-busy]').waitFor({ state: 'detached' });
      await p.clock.runFor(29_900);
      assert.equal(hubRequests(frank), start + i - 1, `no request before 30 s (round ${i})`);
      await p.clock.runFor(200);
      await waitUntil(() => hubRequests(frank) === start + i, { what: `refresh ${i}` });
    }
    await p.locator('#directory[aria-busy]').waitFor({ state: 'detached' });

    // Inside a room the directory asks nothing.
    await p.locator('#directory-name').fill('Frank');
    await p.getByRole('button', { name: `Join ${TITLE}` }).click();
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
    const inRoom = hubRequests(frank);
    await p.clock.runFor(5 * 60_000);
    assert.equal(hubRequests(frank), inRoom, 'no directory request while in a room');
    await p.getByRole('button', { name: 'Leave' }).click();
    await waitUntil(() => hubRequests(frank) === inRoom + 1, { what: 'a refresh on coming back' });
  });

  it('on a phone: no sideways scrolling, named controls, joining with the keyboard', async () => {
    const gina = await client('gina', { viewport: PHONE });
    const p = gina.page;
    await p.goto(`${server.url}/`);
    await p.getByLabel('List it in the public directory').check();
    await card(gina, TITLE).waitFor({ timeout: T });
    assert.ok(await p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth + 1));
    const unnamed = await p.evaluate(() => {
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
    assert.deepEqual(unnamed, []);
    await p.locator('#directory-name').focus();
    await p.keyboard.type('Gina');
    const join = p.getByRole('button', { name: `Join ${TITLE}` });
    await join.focus();
    await p.keyboard.press('Enter');
    await p.locator('#chat').waitFor({ state: 'visible', timeout: T });
  });

  it('no console error and no request to another origin', () => {
    assert.deepEqual(clients.flatMap((c) => c.errors), []);
    assert.deepEqual(clients.flatMap((c) => c.foreign), []);
  });
});

describe('the directory under the server rate limit', { timeout: 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer({ args: ['--hub-requests-per-minute', '1', '--disable-daily-topic'] });
    browser = await launchBrowser();
  });

  after(async () => {
    await closeBrowser(browser);
    if (server) await server.stop();
    await stopAllServers();
  });

  it('a 429 is shown and honoured: nothing is asked again before Retry-After', async () => {
    const c = await openClient(browser, server.url, { name: 'limited' });
    const hub = [];
    c.page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/api/hub') hub.push(r.url());
    });
    await c.page.clock.install();
    await c.page.goto(`${server.url}/`);
    await c.page.locator('#directory-status', { hasText: 'No public rooms yet.' }).waitFor({ timeout: T });
    await c.page.locator('#directory-refresh').click(); // the second request this minute: 429
    await c.page.locator('#directory-error', { hasText: 'The directory is busy for your network. Trying again in 60 s.' }).waitFor({ timeout: T });
    await c.page.clock.pauseAt((await c.page.evaluate(() => Date.now())) + 10);
    assert.equal(hub.length, 2);
    await c.page.locator('#directory-refresh').click();
    await c.page.clock.runFor(58_000);
    assert.equal(hub.length, 2, 'no request while the server asked to wait');
    await c.page.clock.runFor(3_000);
    await waitUntil(() => hub.length === 3, { what: 'the request after Retry-After' });
    assert.deepEqual(c.errors.filter((e) => !/429/.test(e)), []);
  });
});

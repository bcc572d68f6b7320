import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PAGE_SIZE, REFRESH_MS, REQUEST_BUDGET, hubQuery, readRoom, readHubPage, pageInfo, retryAfterMs,
  membersText, activityText, onlineText, expiryText,
} from '../../js/hub.js';

const ROOM = 'X2-KtJ6oRzdxbguxl5DAR';
const KEY = 'AMVGFZBTFLeed7tVncI1oKoFUdNIv6goGz64x0cuU1M';

function room(extra = {}) {
  return {
    roomId: ROOM, shareCode: `${ROOM}:${KEY}:0:1773532800`, title: 'Maps you love', description: 'Old atlases',
    tags: ['daily-topic', 'maps'], memberCount: 3, hasPassword: false, createdAt: 1773500966,
    expiresAt: 1773532800, isDailyTopic: true, messageCount5min: 12, ...extra,
  };
}

test('the refresh stays well inside the server budget of 30 a minute', () => {
  assert.ok(60_000 / REFRESH_MS <= 2);
  assert.ok(REQUEST_BUDGET.requests * (60_000 / REQUEST_BUDGET.windowMs) <= 15);
});

test('queries carry paging, and only the filters that are set', () => {
  assert.equal(hubQuery({}), `?limit=${PAGE_SIZE}&offset=0`);
  assert.equal(hubQuery({ q: ' night owls ', tag: '#Music', sort: 'active', page: 2 }), `?limit=${PAGE_SIZE}&offset=${2 * PAGE_SIZE}&q=night+owls&tag=Music&sort=active`);
  assert.equal(hubQuery({ sort: 'bogus', page: -3 }), `?limit=${PAGE_SIZE}&offset=0`);
  const long = new URLSearchParams(hubQuery({ q: 'x'.repeat(500) }).slice(1)).get('q');
  assert.equal(long.length, 100);
  assert.equal(new URLSearchParams(hubQuery({ q: 'a&b=c' }).slice(1)).get('q'), 'a&b=c');
});

test('rooms are read strictly; unjoinable ones are dropped', () => {
  assert.deepEqual(readRoom(room()), { ...room() });
  assert.equal(readRoom(room({ roomId: 'short' })), null);
  assert.equal(readRoom(room({ shareCode: 'nope' })), null);
  assert.equal(readRoom(room({ shareCode: `${'Y'.repeat(21)}:${KEY}` })), null, 'the code must name the same room');
  assert.equal(readRoom(null), null);
  assert.equal(readRoom([1]), null);
  const odd = readRoom(room({ title: 42, tags: null, memberCount: -1, hasPassword: 'yes', isDailyTopic: 1, messageCount5min: 1.5 }));
  assert.deepEqual([odd.title, odd.tags, odd.memberCount, odd.hasPassword, odd.isDailyTopic, odd.messageCount5min], ['Untitled room', [], 0, false, false, 0]);
});

test('a page is read strictly', () => {
  const page = readHubPage({ rooms: [room(), { roomId: 1 }], total: 2, limit: 20, offset: 0, totalOnline: 7 });
  assert.equal(page.rooms.length, 1);
  assert.deepEqual([page.total, page.limit, page.offset, page.totalOnline], [2, 20, 0, 7]);
  assert.throws(() => readHubPage({ rooms: null }));
  assert.throws(() => readHubPage('<html>'));
  assert.throws(() => readHubPage(null));
});

test('paging figures', () => {
  assert.deepEqual(pageInfo({ total: 45, offset: 20, limit: 20, shown: 20 }), { page: 2, pages: 3, from: 21, to: 40, hasPrev: true, hasNext: true });
  assert.deepEqual(pageInfo({ total: 45, offset: 40, limit: 20, shown: 5 }), { page: 3, pages: 3, from: 41, to: 45, hasPrev: true, hasNext: false });
  assert.deepEqual(pageInfo({ total: 0, offset: 0, limit: 20, shown: 0 }), { page: 1, pages: 1, from: 0, to: 0, hasPrev: false, hasNext: false });
});

test('Retry-After in seconds or as a date, bounded', () => {
  assert.equal(retryAfterMs('60'), 60_000);
  assert.equal(retryAfterMs('0'), 1000);
  assert.equal(retryAfterMs('999999'), 300_000);
  assert.equal(retryAfterMs(null), 60_000);
  assert.equal(retryAfterMs('soon'), 60_000);
  const now = Date.parse('2026-03-14T15:00:00Z');
  assert.equal(retryAfterMs('Sat, 14 Mar 2026 15:00:30 GMT', now), 30_000);
});

test('readable figures', () => {
  assert.deepEqual([membersText(0), membersText(1), membersText(3)], ['Nobody here yet', '1 person here', '3 people here']);
  assert.deepEqual([activityText(0), activityText(1), activityText(12)], ['Quiet lately', '1 message in 5 min', '12 messages in 5 min']);
  assert.deepEqual([onlineText(1), onlineText(5)], ['1 person online', '5 people online']);
  const now = 1_773_500_966;
  assert.equal(expiryText(0, now), 'Never expires');
  assert.equal(expiryText(now - 1, now), 'Expired');
  assert.equal(expiryText(now + 30, now), 'Expires in under a minute');
  assert.equal(expiryText(now + 4 * 60 + 5, now), 'Expires in 4 min');
  assert.equal(expiryText(1_773_532_800, now), 'Expires in 8 h 50 min');
  assert.equal(expiryText(now + 2 * 86_400 + 3 * 3600, now), 'Expires in 2 d 3 h');
});

// The public directory (`GET /api/hub`) for the browser: the query the view
// asks, a strict reading of the answer (it comes from the network, so every
// field is checked before it reaches the page), how often to ask, and the
// readable texts of the figures. Pure functions, no DOM, no fetch.

import { parseShareCode } from './sharecode.js';

/** Rooms per page (the server allows up to 100). */
export const PAGE_SIZE = 20;
/** Auto-refresh period while the directory is on screen: 2 requests a minute. */
export const REFRESH_MS = 30_000;
/**
 * The client's own budget for directory requests (searching, paging,
 * refreshing): well inside the server's default of 30 per minute per IP,
 * which also has to cover other tabs and people behind the same address.
 */
export const REQUEST_BUDGET = Object.freeze({ requests: 12, windowMs: 60_000 });
/** Wait after the last keystroke before searching. */
export const SEARCH_DEBOUNCE_MS = 400;
/** Longest wait honoured from a Retry-After header. */
const MAX_RETRY_AFTER_MS = 5 * 60_000;
/** Longest query text sent (the server has no limit; ours keeps URLs short). */
const MAX_QUERY_CHARS = 100;

/** Sort orders the server knows; '' is its default (people, then newest). */
export const SORTS = Object.freeze([
  { value: '', label: 'Popular' },
  { value: 'active', label: 'Most active' },
  { value: 'people', label: 'Most people' },
  { value: 'newest', label: 'Newest' },
]);

const ROOM_ID_RE = /^[A-Za-z0-9_-]{21}$/;

/** The query string of one directory request (leading '?'). */
export function hubQuery({ q = '', tag = '', sort = '', page = 0 } = {}) {
  const params = new URLSearchParams();
  params.set('limit', String(PAGE_SIZE));
  params.set('offset', String(Math.max(0, Math.floor(page)) * PAGE_SIZE));
  const text = String(q).trim().slice(0, MAX_QUERY_CHARS);
  if (text) params.set('q', text);
  const t = String(tag).trim().replace(/^#/, '').slice(0, MAX_QUERY_CHARS);
  if (t) params.set('tag', t);
  if (SORTS.some((s) => s.value === sort) && sort) params.set('sort', sort);
  return `?${params}`;
}

function count(v) {
  return Number.isSafeInteger(v) && v >= 0 ? v : 0;
}

function text(v, max) {
  return typeof v === 'string' ? v.slice(0, max) : '';
}

/**
 * One room of the answer, checked; null when it cannot be shown or joined
 * (no valid share code for its id).
 */
export function readRoom(r) {
  if (!r || typeof r !== 'object' || Array.isArray(r)) return null;
  if (typeof r.roomId !== 'string' || !ROOM_ID_RE.test(r.roomId)) return null;
  const code = parseShareCode(typeof r.shareCode === 'string' ? r.shareCode : '');
  if (!code || code.roomId !== r.roomId) return null;
  const tags = Array.isArray(r.tags) ? r.tags.filter((t) => typeof t === 'string' && t).slice(0, 10).map((t) => t.slice(0, 40)) : [];
  return {
    roomId: r.roomId,
    shareCode: r.shareCode,
    title: text(r.title, 200) || 'Untitled room',
    description: text(r.description, 1000),
    tags,
    memberCount: count(r.memberCount),
    messageCount5min: count(r.messageCount5min),
    hasPassword: r.hasPassword === true,
    isDailyTopic: r.isDailyTopic === true,
    createdAt: count(r.createdAt),
    expiresAt: count(r.expiresAt),
  };
}

/** A page of the answer, checked; throws on anything that is not one. */
export function readHubPage(json) {
  if (!json || typeof json !== 'object' || !Array.isArray(json.rooms)) throw new TypeError('not a directory page');
  const rooms = json.rooms.map(readRoom).filter(Boolean);
  return {
    rooms,
    total: count(json.total),
    offset: count(json.offset),
    limit: count(json.limit) || PAGE_SIZE,
    totalOnline: count(json.totalOnline),
  };
}

/** Where a page sits: 1-based page number, page count, the rooms shown. */
export function pageInfo({ total, offset, limit, shown }) {
  const size = limit > 0 ? limit : PAGE_SIZE;
  const pages = Math.max(1, Math.ceil(total / size));
  const page = Math.min(pages, Math.floor(offset / size) + 1);
  return {
    page,
    pages,
    from: shown > 0 ? offset + 1 : 0,
    to: offset + shown,
    hasPrev: offset > 0,
    hasNext: offset + shown < total,
  };
}

/** Milliseconds to wait from a Retry-After header (seconds or an HTTP date). */
export function retryAfterMs(header, now = Date.now()) {
  const fallback = 60_000;
  if (typeof header !== 'string' || !header.trim()) return fallback;
  const v = header.trim();
  let ms;
  if (/^\d+$/.test(v)) ms = Number(v) * 1000;
  else {
    const at = Date.parse(v);
    ms = Number.isNaN(at) ? fallback : at - now;
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(1000, ms));
}

function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

/** "Nobody here yet", "1 person here", "3 people here". */
export function membersText(n) {
  return n === 0 ? 'Nobody here yet' : `${plural(n, 'person', 'people')} here`;
}

/** "Quiet", or the 5-minute message count. */
export function activityText(n) {
  return n === 0 ? 'Quiet lately' : `${plural(n, 'message', 'messages')} in 5 min`;
}

/** "3 people online" (connected to the server, in any room). */
export function onlineText(n) {
  return `${plural(n, 'person', 'people')} online`;
}

/** "Never expires", "Expires in 2 d 3 h", "Expires in 5 h 12 min", "Expires in 4 min", "Expired". */
export function expiryText(expiresAt, nowSecs) {
  if (!expiresAt) return 'Never expires';
  const left = expiresAt - nowSecs;
  if (left < 0) return 'Expired';
  if (left < 60) return 'Expires in under a minute';
  const d = Math.floor(left / 86_400);
  const h = Math.floor((left % 86_400) / 3600);
  const m = Math.floor((left % 3600) / 60);
  if (d > 0) return `Expires in ${d} d ${h} h`;
  if (h > 0) return `Expires in ${h} h ${m} min`;
  return `Expires in ${m} min`;
}

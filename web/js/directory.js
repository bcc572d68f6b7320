// The public directory view on the start page: search, tag filter, sort,
// paging, each room's people, recent activity, password and expiry, and one
// click (or Enter) to join. It reads `GET /api/hub` on this page's own
// origin (the CSP allows nothing else).
//
// Requests stay well inside the server's per-IP budget (30 a minute by
// default): the list refreshes every 30 s only while it is on screen (the
// start page shown and the tab visible), searches wait for a pause in
// typing, every request goes through the client's own budget of 12 a
// minute, and a 429 is honoured for as long as its Retry-After says.
// Joining is app.js's business: the view hands it the room's share code,
// the name and the password, and shows any refusal on the room's card.

import {
  REFRESH_MS, REQUEST_BUDGET, SEARCH_DEBOUNCE_MS, SORTS, PAGE_SIZE,
  hubQuery, readHubPage, pageInfo, retryAfterMs, membersText, activityText, onlineText, expiryText,
} from './hub.js';
import { DAILY_TOPIC_TAG } from './listing.js';
import { SlidingWindowLimiter } from './ratelimit.js';
import { validName } from './protocol.js';

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'for') node.setAttribute(k, v === true ? '' : String(v));
    else node[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function timeLabel(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/**
 * Starts the directory view. `join({code, name, password, title, onError, onJoined})`
 * joins a room (app.js), then calls `onJoined()` or, if the join is refused,
 * `onError(text)`.
 */
export function initDirectory({ join }) {
  const view = new DirectoryView(join);
  view.start();
  return view;
}

class DirectoryView {
  constructor(join) {
    this.join = join;
    this.query = { q: '', tag: '', sort: '', page: 0 };
    this.limiter = new SlidingWindowLimiter(REQUEST_BUDGET.requests, REQUEST_BUDGET.windowMs);
    this.timer = null;
    this.debounce = null;
    this.inflight = null;
    this.blockedUntil = 0;
    this.lastLoaded = 0;
    this.stopped = false; // the directory is not served on this origin
    this.page = null;
    this.deferred = null; // a page whose order waits until focus leaves the list
    this.cards = new Map(); // roomId -> card
    this.joining = null; // the card whose join is pending
  }

  start() {
    const sort = $('directory-sort');
    for (const s of SORTS) sort.append(el('option', { value: s.value, text: s.label }));
    $('directory-search').addEventListener('submit', (e) => {
      e.preventDefault();
      this.search(true);
    });
    $('directory-q').addEventListener('input', () => this.search(false));
    $('directory-tag').addEventListener('input', () => this.search(false));
    $('directory-sort').addEventListener('change', () => this.search(true));
    $('directory-prev').addEventListener('click', () => this.goTo(this.query.page - 1));
    $('directory-next').addEventListener('click', () => this.goTo(this.query.page + 1));
    $('directory-refresh').addEventListener('click', () => {
      this.stopped = false;
      this.load();
    });
    $('directory-name').addEventListener('input', () => this.nameError(''));
    $('browse-public').addEventListener('click', () => {
      $('directory').scrollIntoView({ block: 'start' });
      $('directory-q').focus();
    });
    $('directory-list').addEventListener('focusout', (e) => {
      if (this.deferred && !$('directory-list').contains(e.relatedTarget)) {
        const page = this.deferred;
        this.deferred = null;
        this.render(page);
      }
    });
    // Load when the start page comes (back) on screen; pause while it is not.
    document.addEventListener('visibilitychange', () => this.onShown());
    new MutationObserver(() => this.onShown()).observe($('landing'), { attributes: true, attributeFilter: ['hidden'] });
    this.load();
  }

  visible() {
    return !document.hidden && !$('landing').hidden;
  }

  onShown() {
    if (!this.visible() || this.stopped) return;
    if (Date.now() - this.lastLoaded >= REFRESH_MS) this.load();
    else this.schedule(REFRESH_MS - (Date.now() - this.lastLoaded));
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), Math.max(0, ms));
  }

  search(now) {
    const q = $('directory-q').value.trim();
    const tag = $('directory-tag').value.trim().replace(/^#/, '');
    const sort = $('directory-sort').value;
    const changed = q !== this.query.q || tag !== this.query.tag || sort !== this.query.sort;
    if (!changed && !now) return;
    this.query = { q, tag, sort, page: changed ? 0 : this.query.page };
    clearTimeout(this.debounce);
    if (now) this.load();
    else this.debounce = setTimeout(() => this.load(), SEARCH_DEBOUNCE_MS);
  }

  filterByTag(tag) {
    $('directory-tag').value = tag;
    this.search(true);
    $('directory-tag').focus();
  }

  goTo(page) {
    this.query = { ...this.query, page: Math.max(0, page) };
    this.load();
  }

  async load() {
    clearTimeout(this.timer);
    clearTimeout(this.debounce);
    if (!this.visible()) return; // onShown() resumes
    const wait = Math.max(this.blockedUntil - Date.now(), this.limiter.msUntilFree());
    if (wait > 0) {
      this.schedule(wait);
      return;
    }
    this.limiter.record();
    if (this.inflight) this.inflight.abort();
    const ctl = new AbortController();
    this.inflight = ctl;
    const query = { ...this.query };
    $('directory').setAttribute('aria-busy', 'true');
    try {
      const res = await fetch(`/api/hub${hubQuery(query)}`, {
        signal: ctl.signal,
        cache: 'no-store',
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
      });
      const body = await res.text();
      if (ctl !== this.inflight) return;
      this.answer(res, body, query);
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      if (ctl !== this.inflight) return;
      this.showError('Could not load the public rooms. Trying again shortly.');
      this.schedule(REFRESH_MS);
    } finally {
      if (ctl === this.inflight) {
        this.inflight = null;
        $('directory').removeAttribute('aria-busy');
      }
    }
  }

  answer(res, body, query) {
    let json = null;
    try {
      json = JSON.parse(body);
    } catch {
      json = null;
    }
    if (res.status === 429) {
      const ms = retryAfterMs(res.headers.get('Retry-After'));
      this.blockedUntil = Date.now() + ms;
      this.showError(`The directory is busy for your network. Trying again in ${Math.ceil(ms / 1000)} s.`);
      this.schedule(ms);
      return;
    }
    const type = res.headers.get('Content-Type') || '';
    if (res.ok && !type.startsWith('application/json')) {
      // This origin does not serve the directory (a relay serves only the page).
      this.stopped = true;
      this.showError('The public directory is not available on this server.');
      this.render({ rooms: [], total: 0, offset: 0, limit: PAGE_SIZE, totalOnline: 0 }, { quiet: true });
      return;
    }
    if (!res.ok) {
      const why = json && typeof json.error === 'string' ? json.error : `HTTP ${res.status}`;
      this.showError(`The directory could not answer (${why}). Trying again shortly.`);
      this.schedule(REFRESH_MS);
      return;
    }
    let page;
    try {
      page = readHubPage(json);
    } catch {
      this.showError('The directory sent an answer this page cannot read.');
      this.schedule(REFRESH_MS);
      return;
    }
    if (!page.rooms.length && page.total > 0 && query.page > 0) {
      // Rooms went away under this page: show the last one there is.
      this.query.page = Math.max(0, Math.ceil(page.total / PAGE_SIZE) - 1);
      this.schedule(0);
      return;
    }
    this.lastLoaded = Date.now();
    this.showError('');
    this.render(page);
    this.schedule(REFRESH_MS);
  }

  showError(text) {
    const p = $('directory-error');
    p.textContent = text;
    p.hidden = !text;
  }

  nameError(text) {
    const p = $('directory-name-error');
    p.textContent = text;
    p.hidden = !text;
    if (text) $('directory-name').setAttribute('aria-invalid', 'true');
    else $('directory-name').removeAttribute('aria-invalid');
  }

  render(page, { quiet = false } = {}) {
    this.page = page;
    const list = $('directory-list');
    const ids = page.rooms.map((r) => r.roomId);
    const current = [...list.children].map((li) => li.dataset.roomId);
    const sameOrder = ids.length === current.length && ids.every((id, i) => id === current[i]);
    const focusInside = list.contains(document.activeElement);
    if (!sameOrder && focusInside) {
      // Do not pull the card someone is using from under them: update the
      // figures now, the order when the focus leaves the list.
      for (const room of page.rooms) {
        const card = this.cards.get(room.roomId);
        if (card) this.fill(card, room);
      }
      this.deferred = page;
    } else {
      const next = new Map();
      for (const room of page.rooms) {
        const card = this.cards.get(room.roomId) || this.card(room);
        this.fill(card, room);
        next.set(room.roomId, card);
      }
      this.cards = next;
      if (!sameOrder) list.replaceChildren(...[...next.values()].map((c) => c.li));
    }

    const info = pageInfo({ total: page.total, offset: page.offset, limit: page.limit, shown: page.rooms.length });
    $('directory-prev').disabled = !info.hasPrev;
    $('directory-next').disabled = !info.hasNext;
    $('directory-page').textContent = page.total > 0 ? `Page ${info.page} of ${info.pages}` : '';
    $('directory-online').textContent = quiet ? '' : onlineText(page.totalOnline);
    const filtered = this.query.q || this.query.tag;
    let status;
    if (quiet) status = '';
    else if (page.total === 0) status = filtered ? 'No public rooms match.' : 'No public rooms yet. Create one and tick “List it in the public directory”.';
    else status = `${page.total} public ${page.total === 1 ? 'room' : 'rooms'}${filtered ? ' match' : ''} · showing ${info.from}–${info.to} · updated ${timeLabel(Date.now())}`;
    $('directory-status').textContent = status;

    const tags = new Set([DAILY_TOPIC_TAG]);
    for (const r of page.rooms) for (const t of r.tags) tags.add(t);
    $('directory-tags').replaceChildren(...[...tags].sort().map((t) => el('option', { value: t })));
  }

  /** A room's card: title, badges, description, tags, figures, the join form. */
  card(room) {
    const id = room.roomId;
    const title = el('h3', { class: 'room-card-title', id: `dir-title-${id}` });
    const badges = el('p', { class: 'room-card-badges' });
    const desc = el('p', { class: 'room-card-desc' });
    const tags = el('ul', { class: 'room-card-tags', 'aria-label': 'Tags' });
    const members = el('span', { class: 'room-card-members' });
    const activity = el('span', { class: 'room-card-activity' });
    const expiry = el('span', { class: 'room-card-expiry' });
    const figures = el('p', { class: 'room-card-figures' }, members, activity, expiry);
    const pwLabel = el('label', { for: `dir-pw-${id}`, class: 'visually-hidden' });
    const pw = el('input', { type: 'password', id: `dir-pw-${id}`, autocomplete: 'off', placeholder: 'Room password' });
    const pwBox = el('span', { class: 'room-card-password' }, pwLabel, pw);
    const button = el('button', { type: 'submit', class: 'primary room-card-join-btn', text: 'Join' });
    const error = el('p', { class: 'room-card-error', role: 'alert', hidden: true });
    const form = el('form', { class: 'room-card-join', noValidate: true }, pwBox, button);
    const li = el('li', { class: 'room-card', 'data-room-id': id, 'aria-labelledby': title.id },
      el('div', { class: 'room-card-main' }, title, badges, desc, tags, figures), form, error);
    const card = { li, title, badges, desc, tags, members, activity, expiry, pwBox, pwLabel, pw, button, error, room };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.onJoin(card);
    });
    return card;
  }

  fill(card, room) {
    card.room = room;
    card.li.dataset.daily = room.isDailyTopic ? 'true' : 'false';
    card.title.textContent = room.title;
    const badges = [];
    if (room.isDailyTopic) badges.push(el('span', { class: 'badge badge-daily', text: 'Daily topic' }));
    if (room.hasPassword) badges.push(el('span', { class: 'badge badge-password', text: 'Password' }));
    card.badges.replaceChildren(...badges);
    card.badges.hidden = !badges.length;
    card.desc.textContent = room.description;
    card.desc.hidden = !room.description;
    const tagKey = room.tags.join(' ');
    if (card.tagKey !== tagKey) {
      card.tagKey = tagKey;
      card.tags.replaceChildren(...room.tags.map((t) => {
        const b = el('button', { type: 'button', class: 'tag', text: `#${t}`, 'aria-label': `Show rooms tagged ${t}` });
        b.addEventListener('click', () => this.filterByTag(t));
        return el('li', {}, b);
      }));
    }
    card.tags.hidden = !room.tags.length;
    card.members.textContent = membersText(room.memberCount);
    card.activity.textContent = activityText(room.messageCount5min);
    card.expiry.textContent = expiryText(room.expiresAt, Math.floor(Date.now() / 1000));
    card.pwBox.hidden = !room.hasPassword;
    card.pwLabel.textContent = `Password for ${room.title}`;
    card.button.setAttribute('aria-label', `Join ${room.title}`);
  }

  onJoin(card) {
    const room = card.room;
    const name = $('directory-name').value.trim();
    card.error.hidden = true;
    if (!validName(name)) {
      this.nameError('Please enter a name of 1 to 20 characters to join.');
      $('directory-name').focus();
      return;
    }
    if (room.hasPassword && !card.pw.value) {
      this.cardError(card, 'This room has a password: enter it to join.');
      card.pw.focus();
      return;
    }
    card.button.disabled = true;
    this.joining = card;
    this.join({
      code: room.shareCode,
      name,
      password: room.hasPassword ? card.pw.value : '',
      title: room.title,
      onError: (text) => {
        card.button.disabled = false;
        this.joining = null;
        if (!card.li.isConnected) {
          // A refresh took the room off the list meanwhile.
          this.showError(`Could not join “${room.title}”: ${text}`);
          return;
        }
        this.cardError(card, text);
        if (room.hasPassword) card.pw.focus();
        else card.button.focus();
      },
      onJoined: () => this.joined(),
    });
  }

  cardError(card, text) {
    card.error.textContent = text;
    card.error.hidden = !text;
  }

  /** After a successful join the form is cleared for the next visit. */
  joined() {
    if (!this.joining) return;
    this.joining.button.disabled = false;
    this.joining.pw.value = '';
    this.joining = null;
  }
}

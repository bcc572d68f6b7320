// The Arthas browser client: UI and room state. Everything the server sees
// is ciphertext, the room id, a display name and (for password rooms) the
// SHA-256 hex of the password.

import { C, S, LIMITS, SYSTEM_SENDER, EXPIRY_WARNING_SENTINEL, errorText, validName } from './protocol.js';
import { Connection } from './connection.js';
import { relayUrlChooser } from './relays.js';
import {
  generateRoomKey, exportRoomKey, importRoomKey, encryptJson, decryptText, decryptJson,
  hashPassword, parsePayload, exportSigningKeyPair, importSigningKeyPair, generateSigningKeyPair,
} from './crypto.js';
import { RoomSignatures, ANNOUNCEMENT, MAX_MISSING_COUNTERS } from './signatures.js';
import { saveOwner, loadOwner, forgetOwner, latestOwner } from './ownerstore.js';
import { generateDhKeyPair, joinPasswordOf, newOwnerSecret, openRekey, sealRekey, OWNER_FINGERPRINT } from './rekey.js';
import { codeFromLink, formatShareCode, parseShareCode, shareLink } from './sharecode.js';
import { initDirectory } from './directory.js';
import { initPublicListing } from './publicform.js';
import { SlidingWindowLimiter } from './ratelimit.js';
import { FileTransfers, formatBytes } from './files.js';
import { MessageIndex, stableIdOf } from './messageindex.js';
import { formatDuration, formatRemaining } from './format.js';

const $ = (id) => document.getElementById(id);

const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOW_MS = 6000;
const COLOR_RE = /^#[0-9a-fA-F]{6}$/;

// ------------------------------------------------------------------ state

const state = {
  conn: null,
  joining: null, // pending create/join: {kind, name, passwordHash, key, keyEncoded, roomId?, expiresAt?, public?, onError?, onJoined?}
  room: null, // {roomId, key, keyEncoded, prevKey, epoch, owner, ownerSecret, unconfirmedSecret, autoRotate, name, passwordHash, myId, members, hasPassword, ephemeral, expiresAt, public, closed, rejoining}
  signatures: null, // RoomSignatures of this room session
  messages: new MessageIndex(), // stableId -> record
  outbox: [],
  draining: false,
  drainTimer: null,
  inbox: Promise.resolve(),
  typing: { sent: false, lastSent: 0, idleTimer: null, shown: new Map() },
  replyTo: null,
  announceTimer: null,
  expiryTimer: null,
  ownerOps: Promise.resolve(), // the owner's rotations and hand-overs, one after the other
  pendingSecret: null, // {resolve, reject}: a hand-over waiting for RoomSecretSet
  gapNotices: new Map(), // senderId -> [{li, name, count, counters}]: "n messages from X missing"
};

/** This tab's sessionStorage (null where the browser refuses it). */
function tabStore() {
  try {
    return globalThis.sessionStorage || null;
  } catch {
    return null;
  }
}

const publicListing = initPublicListing();
const limiter = new SlidingWindowLimiter(LIMITS.CHAT_PER_WINDOW, LIMITS.CHAT_WINDOW_MS + 500);

const files = new FileTransfers({
  send: (type, data) => !!state.conn && state.conn.send(type, data),
  bufferedAmount: () => (state.conn ? state.conn.bufferedAmount : 0),
  key: () => state.room.key,
  receivers: () => (state.room ? Math.max(0, state.room.members.size - 1) : 0),
  onUpdate: (t) => renderTransfer(t),
});

// ------------------------------------------------------------------ helpers

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

function toast(message, kind = 'error') {
  const t = el('div', { class: `toast toast-${kind}`, text: message });
  $('toasts').append(t);
  setTimeout(() => t.remove(), 6000);
}

function showLandingError(message) {
  const p = $('landing-error');
  p.textContent = message;
  p.hidden = !message;
}

function setBusy(busy) {
  $('create-submit').disabled = busy;
  $('join-submit').disabled = busy;
}

function timeLabel(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function memberColor(id) {
  const m = state.room && state.room.members.get(id);
  return m && COLOR_RE.test(m.color) ? m.color : null;
}

// ------------------------------------------------------------------ connection

function connection() {
  if (state.conn) return state.conn;
  const conn = new Connection(relayUrlChooser());
  conn.addEventListener('status', (e) => renderConnStatus(e.detail));
  conn.addEventListener('open', (e) => onOpen(e.detail));
  conn.addEventListener('closed', () => onClosed());
  conn.addEventListener('message', (e) => {
    const env = e.detail;
    state.inbox = state.inbox.then(() => handleMessage(env)).catch((err) => {
      toast(`Could not process a message: ${err && err.message ? err.message : err}`);
    });
  });
  state.conn = conn;
  return conn;
}

function renderConnStatus({ state: s, delay }) {
  const p = $('conn-status');
  p.dataset.state = s;
  if (s === 'open') p.textContent = 'Connected';
  else if (s === 'connecting') p.textContent = 'Connecting…';
  else if (s === 'reconnecting') p.textContent = 'Reconnecting…';
  else if (s === 'waiting') p.textContent = `Connection lost. Retrying in ${Math.round(delay / 1000)} s…`;
  else p.textContent = 'Not connected';
}

function onOpen({ reconnect }) {
  if (!reconnect || !state.room || state.room.closed) return;
  // Rejoin the room after a reconnect: a new member id, the same key.
  state.room.rejoining = true;
  state.conn.send(C.JOIN_ROOM, { roomId: state.room.roomId, name: state.room.name, password: state.room.passwordHash });
}

function onClosed() {
  settleRoomSecret(new Error('the connection was lost'));
  files.onDisconnect();
  clearTypingShown();
  if (state.joining) joinFailed('The connection to the server was lost. Please try again.');
  if (state.room && !state.room.closed) systemLine('Connection lost. Reconnecting…', 'warn');
}

// ------------------------------------------------------------------ create / join

async function onCreate(ev) {
  ev.preventDefault();
  showLandingError('');
  const name = $('create-name').value.trim();
  if (!validName(name)) {
    showLandingError('Please enter a name of 1 to 20 characters.');
    $('create-name').focus();
    return;
  }
  const listed = publicListing.read();
  if (listed.public && !listed.ok) return; // the errors are shown next to the fields
  setBusy(true);
  try {
    // Export once for the invite link, then keep only a non-extractable copy.
    const keyEncoded = await exportRoomKey(await generateRoomKey());
    const key = await importRoomKey(keyEncoded);
    const typed = $('create-password').value;
    // Without a typed password the room's join secret is the one derived
    // from its key (docs/SECURITY.md §5.3): the share code alone joins.
    const passwordHash = typed ? await hashPassword(typed) : '';
    const owner = await newOwnerSecret();
    const expiry = Number($('create-expiry').value) || 0;
    const ephemeral = Number($('create-ephemeral').value) || 0;
    const conn = connection();
    await conn.whenOpen();
    const autoRotate = $('create-rotate').checked;
    state.joining = { kind: 'create', name, passwordHash, key, keyEncoded, epoch: 0, owner: '', ownerSecret: owner.secret, autoRotate, public: listed.public, title: listed.public ? listed.listing.title : '' };
    // Only the owner secret's hash goes to the server; the secret stays here.
    const data = { name, password: passwordHash, ephemeral, expiry, ownerHash: owner.hash };
    // A public room publishes its key with its listing, by the creator's choice.
    if (listed.public) Object.assign(data, { public: true, ...listed.listing, keyEncoded });
    conn.send(C.CREATE_ROOM, data);
  } catch (err) {
    setBusy(false);
    showLandingError(err && err.message ? err.message : String(err));
  }
}

async function onJoin(ev) {
  ev.preventDefault();
  showLandingError('');
  const parsed = parseShareCode($('join-code').value);
  if (!parsed) {
    showLandingError('That invite link or share code is not valid.');
    $('join-code').focus();
    return;
  }
  const name = $('join-name').value.trim();
  if (!validName(name)) {
    showLandingError('Please enter a name of 1 to 20 characters.');
    $('join-name').focus();
    return;
  }
  await startJoin(parsed, name, $('join-password').value);
}

/**
 * Joins the room of a parsed share code. `onError(text, code)` replaces the
 * landing page's error line (the directory shows refusals on the room's
 * card); `onJoined()` follows a successful join.
 */
async function startJoin(parsed, name, password, { onError = null, onJoined = null, listed = false, title = '' } = {}) {
  if (state.joining || state.room) {
    if (onError) onError('Please wait: another room is being opened.', '');
    return;
  }
  setBusy(true);
  try {
    const key = await importRoomKey(parsed.key);
    // A typed password; else, for a link of a rotated key (epoch 1 and up),
    // the join secret derived from that key (docs/SECURITY.md §5.3).
    const passwordHash = password ? await hashPassword(password) : (parsed.epoch > 0 ? await joinPasswordOf(parsed.key, parsed.roomId) : '');
    const conn = connection();
    await conn.whenOpen();
    state.joining = { kind: 'join', name, passwordHash, key, keyEncoded: parsed.key, epoch: parsed.epoch || 0, owner: parsed.owner || '', ownerSecret: '', autoRotate: false, roomId: parsed.roomId, public: listed, title, onError, onJoined };
    // Only the room id, the name and the hashed password go to the server.
    conn.send(C.JOIN_ROOM, { roomId: parsed.roomId, name, password: passwordHash });
  } catch (err) {
    state.joining = null;
    setBusy(false);
    const text = err && err.message ? err.message : String(err);
    if (onError) onError(text, '');
    else showLandingError(text);
  }
}

/** A pending create or join was refused (or its connection lost). */
function joinFailed(text, code = '') {
  const j = state.joining;
  state.joining = null;
  setBusy(false);
  if (j && j.onError) {
    j.onError(text, code);
    return;
  }
  showLandingError(text);
  if (code === 'E006') $('join-password').focus();
}

async function enterRoom(data) {
  const j = state.joining;
  state.joining = null;
  setBusy(false);
  const members = Array.isArray(data.members) ? data.members : [];
  const me = members[members.length - 1];
  if (!me || typeof data.roomId !== 'string' || (j.kind === 'join' && data.roomId !== j.roomId)) {
    showLandingError('The server sent an unexpected answer.');
    return;
  }
  // The owner of this room in this tab before a reload (docs/SECURITY.md §5.1).
  const kept = j.kind === 'join' ? loadOwner(tabStore(), data.roomId) : null;
  let signing = null;
  if (kept && kept.signing) {
    try {
      signing = await importSigningKeyPair(kept.signing);
    } catch {
      signing = null;
    }
  }
  if (!signing) signing = await generateSigningKeyPair();
  const ownerSecret = j.ownerSecret || (kept ? kept.secret : '');
  const signatures = new RoomSignatures(signing, { roomId: data.roomId, epoch: j.epoch, dh: await generateDhKeyPair() });
  resetRoomState();
  state.room = {
    roomId: data.roomId,
    key: j.key,
    keyEncoded: j.keyEncoded,
    prevKey: null,
    epoch: j.epoch,
    // The owner's signing-key fingerprint: ours when we own the room.
    owner: ownerSecret ? await signatures.ownFingerprint(OWNER_FINGERPRINT) : j.owner,
    ownerSecret,
    unconfirmedSecret: '',
    autoRotate: ownerSecret ? j.autoRotate || (kept ? kept.autoRotate : false) : false,
    name: j.name,
    passwordHash: j.passwordHash,
    myId: me.id,
    members: new Map(),
    hasPassword: !!data.hasPassword,
    ephemeral: Number.isSafeInteger(data.ephemeral) && data.ephemeral > 0 ? data.ephemeral : 0,
    expiresAt: Number.isSafeInteger(data.expiresAt) && data.expiresAt > 0 ? data.expiresAt : 0,
    public: !!j.public,
    title: typeof j.title === 'string' ? j.title : '',
    closed: false,
    rejoining: false,
  };
  state.signatures = signatures;
  setMembers(members);
  $('create-password').value = '';
  $('join-password').value = '';
  showChat();
  if (j.kind === 'create' && j.public) {
    publicListing.reset();
    systemLine('Public room created: it is listed in the directory together with its key, so anyone can read it.', 'warn');
  } else if (j.kind === 'create') systemLine('Room created. Use “Invite” to share the link: it carries the key, so share it privately.');
  else systemLine(`You joined as ${state.room.name}.`);
  if (kept && ownerSecret) systemLine('You are this room’s owner again: this tab kept the owner secret.');
  $('owner-resume').hidden = true;
  persistOwner();
  if (j.onJoined) j.onJoined();
  if (!state.signatures.canSign) systemLine('This browser cannot sign messages (no Ed25519); your messages will show as unverified.', 'warn');
  announcePubkey();
  // The fragment holds the key: do not leave it in the address bar.
  if (location.hash) history.replaceState(null, '', location.pathname + location.search);
}

function rejoined(data) {
  const r = state.room;
  r.rejoining = false;
  const members = Array.isArray(data.members) ? data.members : [];
  const me = members[members.length - 1];
  if (me) r.myId = me.id;
  setMembers(members);
  systemLine('Reconnected.');
  announcePubkey();
  drainOutbox();
}

function resetRoomState() {
  files.clear();
  state.messages.clear();
  state.outbox = [];
  clearTimeout(state.drainTimer);
  clearTimeout(state.announceTimer);
  clearTypingShown();
  state.replyTo = null;
  state.gapNotices.clear();
  limiter.reset();
  $('messages').replaceChildren();
}

function leaveRoom() {
  if (state.room) forgetOwner(tabStore(), state.room.roomId);
  if (state.room && !state.room.closed && state.conn) state.conn.send(C.LEAVE_ROOM, {});
  state.room = null;
  state.signatures = null;
  resetRoomState();
  clearInterval(state.expiryTimer);
  showLanding();
}

// ------------------------------------------------------------------ views

function showChat() {
  $('landing').hidden = true;
  $('chat').hidden = false;
  const r = state.room;
  $('room-title').textContent = r.title || `Room ${r.roomId.slice(0, 6)}…`;
  $('room-lock').hidden = !r.hasPassword;
  $('room-public').hidden = !r.public;
  const eph = $('room-ephemeral');
  eph.hidden = !r.ephemeral;
  if (r.ephemeral) eph.textContent = `Messages vanish after ${formatDuration(r.ephemeral)}`;
  renderShareLink();
  renderOwnerControls();
  $('share-panel').hidden = true;
  $('share-toggle').setAttribute('aria-expanded', 'false');
  $('closed-bar').hidden = true;
  $('reply-bar').hidden = true;
  setComposerEnabled(true);
  startExpiryTicker();
  $('message-input').focus();
}

/** The invite link of the current key (it changes with every rotation). */
function renderShareLink() {
  const r = state.room;
  const code = formatShareCode({ roomId: r.roomId, key: r.keyEncoded, ephemeral: r.ephemeral, expiresAt: r.expiresAt, epoch: r.epoch, owner: r.owner });
  $('share-link').value = shareLink(location.origin, code);
  $('share-code-plain').value = formatShareCode({ roomId: r.roomId, key: r.keyEncoded, ephemeral: r.ephemeral, expiresAt: r.expiresAt });
  $('room-epoch').textContent = `Key epoch ${r.epoch}`;
  $('room-epoch').dataset.epoch = String(r.epoch);
}

/** The owner's badge, buttons and setting: shown only while this client holds the owner secret. */
function renderOwnerControls() {
  const r = state.room;
  const owner = !!(r && r.ownerSecret && !r.closed);
  $('room-owner').hidden = !owner;
  $('rotate-btn').hidden = !owner;
  $('owner-settings').hidden = !owner;
  $('auto-rotate-note').hidden = !owner;
  $('auto-rotate').checked = owner && r.autoRotate;
}

/**
 * Keeps (or updates) this tab's owner record: the secret, the signing key,
 * the setting and the current share code, in sessionStorage only
 * (ownerstore.js, docs/SECURITY.md §5.1).
 */
async function persistOwner() {
  const r = state.room;
  if (!r || !r.ownerSecret) return;
  const signing = state.signatures && state.signatures.signing;
  let jwk = null;
  try {
    jwk = signing ? await exportSigningKeyPair(signing) : null;
  } catch {
    jwk = null;
  }
  if (state.room !== r || !r.ownerSecret) return;
  const code = formatShareCode({ roomId: r.roomId, key: r.keyEncoded, ephemeral: r.ephemeral, expiresAt: r.expiresAt, epoch: r.epoch, owner: r.owner });
  saveOwner(tabStore(), r.roomId, { secret: r.ownerSecret, signing: jwk, autoRotate: r.autoRotate, name: r.name, code });
}

function showLanding() {
  $('chat').hidden = true;
  $('landing').hidden = false;
  document.title = 'Arthas · encrypted ephemeral chat';
}

function setComposerEnabled(on) {
  for (const id of ['message-input', 'send-btn', 'file-input']) $(id).disabled = !on;
  $('attach-label').classList.toggle('disabled', !on);
}

function startExpiryTicker() {
  clearInterval(state.expiryTimer);
  const badge = $('room-expiry');
  const tick = () => {
    const r = state.room;
    if (!r) return;
    if (r.closed) {
      badge.textContent = 'Closed';
      badge.dataset.state = 'closed';
      return;
    }
    if (!r.expiresAt) {
      badge.textContent = 'Never expires';
      badge.dataset.state = 'none';
      return;
    }
    const left = r.expiresAt - Math.floor(Date.now() / 1000);
    badge.textContent = formatRemaining(left);
    badge.dataset.state = left <= 300 ? 'soon' : 'later';
    badge.title = `Expires at ${new Date(r.expiresAt * 1000).toLocaleString()}`;
  };
  tick();
  state.expiryTimer = setInterval(tick, 1000);
}

// ------------------------------------------------------------------ members

function setMembers(list) {
  const r = state.room;
  r.members.clear();
  for (const m of list) {
    if (m && typeof m.id === 'string') r.members.set(m.id, { id: m.id, name: typeof m.name === 'string' ? m.name : '?', color: m.color });
  }
  renderMembers();
}

function renderMembers() {
  const r = state.room;
  const ul = $('member-list');
  ul.replaceChildren();
  for (const m of r.members.values()) {
    const dot = el('span', { class: 'dot', 'aria-hidden': 'true' });
    if (COLOR_RE.test(m.color)) dot.style.setProperty('--member-color', m.color);
    const li = el('li', { 'data-member-id': m.id }, dot, el('span', { class: 'member-name', text: m.name }));
    // The key fingerprint tells two members of the same name apart.
    const peer = state.signatures && state.signatures.peers.get(m.id);
    if (peer) li.append(el('span', { class: 'member-fp', title: 'Fingerprint of this member’s signing key', text: peer.fp }));
    if (m.id === r.myId) li.append(el('span', { class: 'you', text: '(you)' }));
    else if (r.ownerSecret && !r.closed) {
      const kick = el('button', { type: 'button', class: 'kick-btn', 'aria-label': `Remove ${m.name}`, text: 'Remove' });
      kick.addEventListener('click', () => ownerTask(() => rotateKey({ kickId: m.id })));
      li.append(kick);
      // Ownership goes only to a member that can receive it sealed (a signed X25519 key).
      if (peer && peer.dh && state.signatures.dh && state.signatures.canSign) {
        const give = el('button', { type: 'button', class: 'owner-btn', 'aria-label': `Make ${m.name} the owner`, text: 'Make owner' });
        give.addEventListener('click', () => ownerTask(() => rotateKey({ heirId: m.id })));
        li.append(give);
      }
    }
    ul.append(li);
  }
  $('member-count').textContent = String(r.members.size);
}

function memberName(id, fallback) {
  const m = state.room && state.room.members.get(id);
  return m ? m.name : fallback || 'Someone';
}

// ------------------------------------------------------------------ messages view

function scrollToBottom(force = false) {
  const list = $('messages');
  const near = list.scrollHeight - list.scrollTop - list.clientHeight < 120;
  if (force || near) list.scrollTop = list.scrollHeight;
}

function scheduleEphemeral(rec) {
  const r = state.room;
  if (!r || !r.ephemeral) return;
  setTimeout(() => removeRecord(rec), r.ephemeral * 1000);
}

function removeRecord(rec) {
  rec.li.remove();
  if (rec.stableId) state.messages.delete(rec.stableId);
  if (rec.transfer) files.release(rec.transfer);
}

function systemLine(text, kind = 'info') {
  const li = el('li', { class: `msg system system-${kind}`, 'data-kind': 'system' }, el('p', { class: 'body', text }));
  $('messages').append(li);
  scrollToBottom(true);
  return li;
}

const VERIFY_LABEL = {
  verified: ['✓', 'Verified', 'The signature matches the key this member announced.'],
  unknown: ['?', 'Unverified', 'No signature could be checked for this message (the sender has not announced a key, or did not sign).'],
  failed: ['✗', 'Signature failed', 'The signature does not match this member’s key: the message may be forged.'],
  own: ['✓', 'Signed by you', 'You signed this message.'],
  replayed: ['⟲', 'Replayed', 'This signed message was delivered before: the server sent it again.'],
  reordered: ['⇅', 'Out of order', 'This signed message arrived after a later message of its sender: the server reordered them.'],
};

function setVerify(rec, status) {
  rec.verify = status;
  rec.li.dataset.verify = status;
  const [icon, label, title] = VERIFY_LABEL[status];
  const peer = status === 'verified' && state.signatures && state.signatures.peers.get(rec.senderId);
  rec.verifyEl.replaceChildren(el('span', { 'aria-hidden': 'true', text: icon }), ` ${label}`, peer ? el('span', { class: 'fp', text: ` · ${peer.fp}` }) : '');
  rec.verifyEl.title = title;
  rec.verifyEl.className = `verify verify-${status}`;
}

function buildMessageItem({ senderId, senderName, time, mine }) {
  const author = el('span', { class: 'author', text: mine ? 'You' : senderName });
  const color = memberColor(senderId);
  const li = el('li', { class: `msg${mine ? ' mine' : ''}`, 'data-sender-id': senderId, 'data-kind': 'chat' });
  if (color) li.style.setProperty('--member-color', color);
  const verifyEl = el('span', { class: 'verify' });
  const timeEl = el('time', { dateTime: new Date(time).toISOString(), text: timeLabel(time) });
  const meta = el('p', { class: 'meta' }, author, ' ', timeEl, ' ', verifyEl);
  li.append(meta);
  return { li, verifyEl, meta };
}

function addActions(rec) {
  const actions = el('div', { class: 'actions' });
  const reactBtn = el('button', { type: 'button', class: 'act react-btn', 'aria-label': 'Add a reaction', 'aria-expanded': 'false', text: '☺' });
  const picker = el('div', { class: 'picker', role: 'group', 'aria-label': 'Choose a reaction', hidden: true });
  for (const emoji of REACTIONS) {
    const b = el('button', { type: 'button', class: 'pick', 'aria-label': `React with ${emoji}`, 'data-emoji': emoji, text: emoji });
    b.addEventListener('click', () => {
      picker.hidden = true;
      reactBtn.setAttribute('aria-expanded', 'false');
      toggleReaction(rec, emoji);
      reactBtn.focus();
    });
    picker.append(b);
  }
  picker.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      picker.hidden = true;
      reactBtn.setAttribute('aria-expanded', 'false');
      reactBtn.focus();
    }
  });
  reactBtn.addEventListener('click', () => {
    picker.hidden = !picker.hidden;
    reactBtn.setAttribute('aria-expanded', String(!picker.hidden));
    if (!picker.hidden) picker.querySelector('button').focus();
  });
  const replyBtn = el('button', { type: 'button', class: 'act reply-btn', 'aria-label': 'Reply', text: '↩' });
  replyBtn.addEventListener('click', () => startReply(rec));
  actions.append(replyBtn, reactBtn);
  rec.li.append(actions, picker);
  rec.reactionsEl = el('div', { class: 'reactions', 'aria-label': 'Reactions' });
  rec.li.insertBefore(rec.reactionsEl, actions);
}

function renderReply(reply) {
  if (!reply || typeof reply !== 'object') return null;
  const name = typeof reply.senderName === 'string' ? reply.senderName : '';
  const preview = typeof reply.preview === 'string' ? reply.preview : '';
  return el('blockquote', { class: 'quote' }, el('span', { class: 'quote-author', text: name }), ' ', el('span', { text: preview }));
}

function addChatMessage({ senderId, senderName, time, payload, mine }) {
  const { li, verifyEl } = buildMessageItem({ senderId, senderName, time, mine });
  const rec = { li, verifyEl, senderId, senderName, time, mine, text: payload.text, reactions: new Map(), stableId: null };
  const quote = renderReply(payload.reply);
  if (quote) li.append(quote);
  li.append(el('p', { class: 'body', text: payload.text }));
  addActions(rec);
  $('messages').append(li);
  scrollToBottom(mine);
  scheduleEphemeral(rec);
  return rec;
}

function registerStableId(rec, stableId) {
  rec.stableId = stableId;
  rec.li.dataset.stableId = stableId;
  state.messages.set(stableId, rec);
}

// ------------------------------------------------------------------ reactions

function renderReactions(rec) {
  const box = rec.reactionsEl;
  box.replaceChildren();
  const myId = state.room && state.room.myId;
  for (const [emoji, who] of rec.reactions) {
    if (!who.size) continue;
    const mineToo = who.has(myId);
    const names = [...who].map((id) => (id === myId ? 'you' : memberName(id, 'someone')));
    const chip = el('button', {
      type: 'button',
      class: `chip${mineToo ? ' chip-mine' : ''}`,
      'aria-pressed': String(mineToo),
      'aria-label': `${emoji} ${who.size}: ${names.join(', ')}`,
      'data-emoji': emoji,
      title: names.join(', '),
    }, el('span', { text: emoji }), el('span', { class: 'count', text: String(who.size) }));
    chip.addEventListener('click', () => toggleReaction(rec, emoji));
    box.append(chip);
  }
}

function applyReaction(rec, memberId, emoji, action) {
  let who = rec.reactions.get(emoji);
  if (!who) {
    who = new Set();
    rec.reactions.set(emoji, who);
  }
  if (action === 'add') who.add(memberId);
  else who.delete(memberId);
  if (!who.size) rec.reactions.delete(emoji);
  renderReactions(rec);
}

async function toggleReaction(rec, emoji) {
  const r = state.room;
  if (!r || r.closed || !rec.stableId) return;
  const who = rec.reactions.get(emoji);
  const action = who && who.has(r.myId) ? 'remove' : 'add';
  const enc = await encryptJson(r.key, { stableId: rec.stableId, emoji, action });
  if (!state.conn.send(C.SEND_REACTION, enc)) {
    toast('Not connected: the reaction was not sent.');
    return;
  }
  applyReaction(rec, r.myId, emoji, action);
}

async function onRelayReaction(d) {
  if (typeof d.iv !== 'string' || typeof d.ciphertext !== 'string') return;
  let p;
  try {
    p = await decryptJson(state.room.key, d.iv, d.ciphertext);
  } catch {
    return;
  }
  if (!p || typeof p.stableId !== 'string' || typeof p.emoji !== 'string' || p.emoji.length === 0 || p.emoji.length > 16) return;
  if (p.action !== 'add' && p.action !== 'remove') return;
  const rec = state.messages.find(p.stableId);
  if (rec) applyReaction(rec, d.senderId, p.emoji, p.action);
}

// ------------------------------------------------------------------ replies

function startReply(rec) {
  const preview = rec.text.length > 50 ? `${rec.text.slice(0, 50)}…` : rec.text;
  state.replyTo = { stableId: rec.stableId, senderName: rec.mine ? state.room.name : rec.senderName, preview };
  $('reply-text').textContent = `Replying to ${state.replyTo.senderName}: ${preview}`;
  $('reply-bar').hidden = false;
  $('message-input').focus();
}

function cancelReply() {
  state.replyTo = null;
  $('reply-bar').hidden = true;
}

// ------------------------------------------------------------------ signatures

async function announcePubkey() {
  const signatures = state.signatures;
  if (!signatures || !state.room) return;
  const payload = await signatures.announcement();
  if (payload) enqueueChat(payload, null);
}

function scheduleAnnounce() {
  clearTimeout(state.announceTimer);
  state.announceTimer = setTimeout(announcePubkey, 300);
}

async function onPubkey(signatures, senderId, payload) {
  const { outcome, settled } = await signatures.learn(senderId, payload);
  if (outcome === ANNOUNCEMENT.CONFLICT) {
    systemLine(`${memberName(senderId)} announced a different signing key; it was ignored.`, 'warn');
  }
  for (const { subject, verdict } of settled) setVerify(subject, verdict);
  renderGaps();
  if (outcome === ANNOUNCEMENT.LEARNED) renderMembers();
}

/**
 * Frames the relay did not deliver: a notice per gap in a sender's counters
 * ("2 messages from Alice missing"), counted down when a missing one arrives
 * late (out of order). A gap seen on a message is shown right before it (`anchor`).
 */
function renderGaps(anchor = null) {
  const signatures = state.signatures;
  if (!signatures) return;
  for (const ev of signatures.takeGapEvents()) {
    const list = state.gapNotices.get(ev.senderId) || [];
    if (ev.kind === 'gap') {
      const counters = new Set();
      for (let c = Math.max(ev.from, ev.to - MAX_MISSING_COUNTERS + 1); c <= ev.to; c++) counters.add(c);
      const li = systemLine('', 'warn');
      if (anchor && anchor.isConnected) anchor.before(li);
      li.dataset.gapSender = ev.senderId;
      const notice = { li, name: memberName(ev.senderId), count: ev.count, counters };
      list.push(notice);
      state.gapNotices.set(ev.senderId, list);
      renderGapNotice(notice);
    } else {
      const notice = list.find((n) => n.counters.delete(ev.ctr));
      if (!notice) continue;
      notice.count -= 1;
      renderGapNotice(notice);
    }
  }
}

function renderGapNotice(n) {
  n.li.dataset.missing = String(n.count);
  n.li.querySelector('.body').textContent = n.count > 0
    ? `${n.count} message${n.count === 1 ? '' : 's'} from ${n.name} missing: the server did not deliver ${n.count === 1 ? 'it' : 'them'}.`
    : `The missing messages from ${n.name} arrived late (out of order).`;
}

async function verifyIncoming(signatures, rec, payload) {
  setVerify(rec, await signatures.check(rec.senderId, payload, rec));
}

// ------------------------------------------------------------------ sending chat

function enqueueChat(payload, rec) {
  state.outbox.push({ payload, rec });
  drainOutbox();
}

async function drainOutbox() {
  if (state.draining) return;
  state.draining = true;
  try {
    while (state.outbox.length) {
      const r = state.room;
      if (!r || r.closed || r.rejoining || !state.conn || !state.conn.isOpen()) break;
      const wait = limiter.msUntilFree();
      if (wait > 0) {
        for (const item of state.outbox) if (item.rec) item.rec.li.dataset.state = 'queued';
        clearTimeout(state.drainTimer);
        state.drainTimer = setTimeout(drainOutbox, wait);
        break;
      }
      const item = state.outbox[0];
      const enc = await encryptJson(r.key, item.payload);
      if (state.room !== r || !state.conn.send(C.SEND_MESSAGE, enc)) break;
      limiter.record();
      state.outbox.shift();
      if (item.rec) {
        item.rec.li.dataset.state = 'sent';
        item.rec.time = Date.now();
        registerStableId(item.rec, stableIdOf(r.myId, item.rec.time));
      }
    }
  } finally {
    state.draining = false;
  }
}

async function onSubmit(ev) {
  ev.preventDefault();
  const r = state.room;
  if (!r || r.closed) return;
  const input = $('message-input');
  const text = input.value;
  if (!text.trim()) return;
  const reply = state.replyTo;
  input.value = '';
  autoGrow();
  cancelReply();
  stopTyping();
  const payload = await state.signatures.sign({ text, reply });
  const rec = addChatMessage({ senderId: r.myId, senderName: r.name, time: Date.now(), payload, mine: true });
  rec.li.dataset.state = 'sending';
  setVerify(rec, state.signatures.canSign ? 'own' : 'unknown');
  enqueueChat(payload, rec);
  if (limiter.msUntilFree() > 0) toast('You are sending quickly: messages are queued (10 per 10 seconds).', 'info');
}

// ------------------------------------------------------------------ typing

async function sendTyping(typing) {
  const r = state.room;
  if (!r || r.closed || !state.conn || !state.conn.isOpen()) return;
  const enc = await encryptJson(r.key, { typing });
  state.conn.send(C.TYPING, enc);
}

function onInput() {
  autoGrow();
  const t = state.typing;
  if (!$('message-input').value) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (!t.sent || now - t.lastSent > TYPING_SEND_EVERY_MS) {
    t.sent = true;
    t.lastSent = now;
    sendTyping(true);
  }
  clearTimeout(t.idleTimer);
  t.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

function stopTyping() {
  const t = state.typing;
  clearTimeout(t.idleTimer);
  if (t.sent) {
    t.sent = false;
    sendTyping(false);
  }
}

async function onMemberTyping(d) {
  if (typeof d.id !== 'string' || !state.room || d.id === state.room.myId) return;
  let typing = d.typing === true;
  if (typeof d.iv === 'string' && d.iv && typeof d.ciphertext === 'string' && d.ciphertext) {
    try {
      const p = await decryptJson(state.room.key, d.iv, d.ciphertext);
      typing = !!(p && p.typing === true);
    } catch {
      return;
    }
  }
  const shown = state.typing.shown;
  clearTimeout(shown.get(d.id));
  if (typing) shown.set(d.id, setTimeout(() => { shown.delete(d.id); renderTyping(); }, TYPING_SHOW_MS));
  else shown.delete(d.id);
  renderTyping();
}

function clearTypingShown() {
  for (const timer of state.typing.shown.values()) clearTimeout(timer);
  state.typing.shown.clear();
  renderTyping();
}

function renderTyping() {
  const names = [...state.typing.shown.keys()].map((id) => memberName(id));
  const p = $('typing');
  if (!names.length) p.textContent = '';
  else if (names.length === 1) p.textContent = `${names[0]} is typing…`;
  else if (names.length === 2) p.textContent = `${names[0]} and ${names[1]} are typing…`;
  else p.textContent = 'Several people are typing…';
}

// ------------------------------------------------------------------ files view

const transferViews = new Map();

function transferStatusText(t) {
  switch (t.status) {
    case 'queued': return 'Waiting to send…';
    case 'sending': return `Sending… ${Math.round((t.done / t.totalChunks) * 100)}%`;
    case 'sent': {
      const n = t.receivers;
      if (!n) return 'Sent (nobody else was in the room)';
      return `Sent · delivered to ${Math.min(t.acks.size, n)} of ${n}`;
    }
    case 'receiving': return `Receiving… ${Math.round((t.done / t.totalChunks) * 100)}%`;
    case 'received': return 'Received';
    case 'cancelled': return 'Cancelled';
    case 'failed': return `Failed: ${t.error || 'unknown error'}`;
    default: return t.status;
  }
}

function renderTransfer(t) {
  const r = state.room;
  if (!r) return;
  let v = transferViews.get(t);
  if (!v) {
    const mine = t.direction === 'send';
    const senderId = mine ? r.myId : t.senderId;
    const senderName = mine ? r.name : t.senderName;
    const time = mine ? Date.now() : t.time;
    const { li, verifyEl } = buildMessageItem({ senderId, senderName, time, mine });
    li.dataset.kind = 'file';
    li.dataset.transferId = t.transferId;
    verifyEl.remove();
    const name = el('span', { class: 'file-name', text: t.name });
    const size = el('span', { class: 'file-size', text: formatBytes(t.size) });
    const progress = el('progress', { max: t.totalChunks, value: 0, 'aria-label': `Progress of ${t.name}` });
    const status = el('span', { class: 'file-status', role: 'status' });
    const box = el('div', { class: 'file' }, el('img', { class: 'file-icon', src: 'icons/file.svg', alt: '', width: 32, height: 32 }), el('div', { class: 'file-main' }, name, size, progress, status));
    li.append(box);
    const rec = { li, transfer: t, stableId: null };
    if (mine) {
      const cancel = el('button', { type: 'button', class: 'file-cancel', text: 'Cancel' });
      cancel.addEventListener('click', () => files.cancel(t.transferId));
      box.append(cancel);
      v = { li, box, progress, status, cancel, rec };
    } else {
      v = { li, box, progress, status, rec };
    }
    transferViews.set(t, v);
    $('messages').append(li);
    scrollToBottom(mine);
    scheduleEphemeral(rec);
  }
  v.li.dataset.state = t.status;
  v.progress.value = t.done;
  v.status.textContent = transferStatusText(t);
  if (v.cancel) v.cancel.hidden = !(t.status === 'sending' || t.status === 'queued');
  if (t.previewUrl && !v.preview) {
    v.preview = el('img', { class: 'file-preview', src: t.previewUrl, alt: `Preview of ${t.name}` });
    v.box.after(v.preview);
  }
  if (t.status === 'received' && t.url && !v.link) {
    v.link = el('a', { class: 'file-download', href: t.url, download: t.name, text: `Download ${t.name}` });
    v.box.querySelector('.file-main').append(v.link);
  }
  if (t.status !== 'sending' && t.status !== 'receiving' && t.status !== 'queued') v.progress.hidden = t.status !== 'sent' && t.status !== 'received';
}

function onFileChosen() {
  const input = $('file-input');
  const file = input.files && input.files[0];
  input.value = '';
  if (!file || !state.room || state.room.closed) return;
  try {
    files.send(file);
  } catch (err) {
    toast(err.message);
  }
}

// ------------------------------------------------------------------ incoming

async function handleMessage({ type, data }) {
  const d = data && typeof data === 'object' && !Array.isArray(data) ? data : {};
  switch (type) {
    case S.ROOM_CREATED:
      if (state.joining && state.joining.kind === 'create') {
        state.joining.roomId = d.roomId;
        state.joining.expiresAt = d.expiresAt;
      }
      return;
    case S.ROOM_JOINED:
      if (state.joining) await enterRoom(d);
      else if (state.room && state.room.rejoining) rejoined(d);
      return;
    case S.ERROR:
      return onError(d);
    case S.MATCH_ERROR:
      return onError(d);
    default:
      break;
  }
  const r = state.room;
  if (!r || r.rejoining) return;
  switch (type) {
    case S.MEMBER_JOINED:
      if (typeof d.id !== 'string') return;
      r.members.set(d.id, { id: d.id, name: typeof d.name === 'string' ? d.name : '?', color: d.color });
      renderMembers();
      systemLine(`${memberName(d.id)} joined.`);
      scheduleAnnounce();
      return;
    case S.MEMBER_LEFT: {
      if (typeof d.id !== 'string') return;
      const name = memberName(d.id);
      r.members.delete(d.id);
      state.signatures.peers.delete(d.id);
      renderMembers();
      state.typing.shown.delete(d.id);
      renderTyping();
      if (d.reason === 'kicked') systemLine(`${name} was removed by the room owner.`, 'warn');
      else if (d.reason === 'rekeyed') systemLine(`${name} was removed: their app cannot receive the new room key and needs a new invite link.`, 'warn');
      else {
        systemLine(`${name} left.`);
        // The room's setting (held by the owner's client): whoever left keeps
        // the old key, so the others move to a new one.
        if (r.ownerSecret && r.autoRotate && !r.closed) ownerTask(() => rotateKey({ left: name }));
      }
      return;
    }
    case S.RELAY_DIRECT:
      return onDirect(d);
    case S.ROOM_SECRET_SET:
      // Only a hand-over waits for its answer (the owner hash changed).
      if (d.owner === true && state.pendingSecret) settleRoomSecret(null, d);
      else if (d.owner === true && r.unconfirmedSecret) {
        // A hand-over given up on an unrelated error went through after all:
        // the room's hash is the heir's, and this client holds that secret.
        r.ownerSecret = r.unconfirmedSecret;
        r.unconfirmedSecret = '';
        persistOwner();
        systemLine('The server took the new owner secret after all; you are still the owner. Hand the room over again if you want to.', 'warn');
      }
      return;
    case S.RELAY_MESSAGE:
      return onRelayMessage(d);
    case S.MEMBER_TYPING:
      return onMemberTyping(d);
    case S.RELAY_REACTION:
      return onRelayReaction(d);
    case S.ROOM_CLOSED:
      return onRoomClosed(d);
    case S.RELAY_FILE_META:
      await files.onMeta(d);
      return;
    case S.RELAY_FILE_CHUNK:
      await files.onChunk(d);
      return;
    case S.RELAY_FILE_COMPLETE:
      files.onComplete(d);
      return;
    case S.RELAY_FILE_CANCEL:
      files.onCancel(d);
      return;
    case S.RELAY_FILE_ACK:
      files.onAck(d);
      return;
    default:
      return; // unknown types are ignored
  }
}

async function onRelayMessage(d) {
  const r = state.room;
  const signatures = state.signatures;
  if (d.senderId === SYSTEM_SENDER && d.ciphertext === EXPIRY_WARNING_SENTINEL) {
    // Server notice with an empty iv: never decrypted.
    systemLine('This room expires in less than 5 minutes.', 'warn');
    return;
  }
  if (typeof d.senderId !== 'string' || typeof d.iv !== 'string' || typeof d.ciphertext !== 'string') return;
  let plaintext;
  try {
    plaintext = await decryptWithRoomKeys(r, d.iv, d.ciphertext);
  } catch {
    systemLine(`A message from ${typeof d.senderName === 'string' ? d.senderName : 'someone'} could not be decrypted.`, 'warn');
    return;
  }
  const payload = parsePayload(plaintext);
  if (payload.type === 'pubkey') {
    await onPubkey(signatures, d.senderId, payload);
    return;
  }
  if (!payload.text) return;
  const time = typeof d.t === 'number' ? d.t : Date.now();
  const senderName = typeof d.senderName === 'string' ? d.senderName : memberName(d.senderId);
  const rec = addChatMessage({ senderId: d.senderId, senderName, time, payload, mine: false });
  registerStableId(rec, stableIdOf(d.senderId, time));
  await verifyIncoming(signatures, rec, payload);
  renderGaps(rec.li);
}

const CLOSED_WHY = {
  expired: 'This room has expired and was closed.',
  kicked: 'You were removed from this room by its owner.',
  rekeyed: 'The room key was changed and this app could not receive the new one: ask for a new invite link.',
};

function onRoomClosed(d) {
  const r = state.room;
  r.closed = true;
  forgetOwner(tabStore(), r.roomId);
  settleRoomSecret(new Error('the room was closed'));
  renderOwnerControls();
  files.clear();
  clearTypingShown();
  state.outbox = [];
  renderMembers();
  const why = CLOSED_WHY[d.reason] || 'This room was closed.';
  systemLine(why, 'warn');
  $('closed-text').textContent = why;
  $('closed-bar').hidden = false;
  setComposerEnabled(false);
  startExpiryTicker();
}

// ------------------------------------------------------------------ owner: kick and rotation

/** The current key, then the previous one (messages in flight during a rotation). */
async function decryptWithRoomKeys(r, iv, ciphertext) {
  try {
    return await decryptText(r.key, iv, ciphertext);
  } catch (err) {
    if (!r.prevKey) throw err;
    return decryptText(r.prevKey, iv, ciphertext);
  }
}

/** Runs an owner action after the ones before it (rotations must not interleave). */
function ownerTask(fn) {
  state.ownerOps = state.ownerOps.then(fn).catch((err) => {
    toast(`The room key could not be changed: ${err && err.message ? err.message : err}`);
  });
  return state.ownerOps;
}

/** Waits for the RoomSecretSet of a hand-over; an error or a lost connection meanwhile rejects. */
function awaitRoomSecret() {
  settleRoomSecret(new Error('superseded'));
  return new Promise((resolve, reject) => {
    state.pendingSecret = { resolve, reject };
  });
}

function settleRoomSecret(err, answer) {
  const pending = state.pendingSecret;
  if (!pending) return;
  state.pendingSecret = null;
  if (err) pending.reject(err);
  else pending.resolve(answer);
}

const HEX32 = /^[0-9a-f]{32}$/;
const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The owner rotates the room key (docs/SECURITY.md §5.3): on request (no
 * argument), when removing a member (`kickId`), when a member left and the
 * room asks for it (`left`: the name), or when handing the room over
 * (`heirId`, §5.1). The join password changes to the new key's, the member
 * is kicked, every remaining member with a signed X25519 key gets the new key
 * in a directed message, the others are removed as `rekeyed`, and this
 * client moves to the new epoch. The frames go out in this order on one
 * socket, so the relay applies them in this order.
 *
 * A hand-over sets the new join password and the heir's owner hash in one
 * SetRoomSecret and waits for the answer (on a refusal nothing moved and
 * this client is still the owner); every member's new key then names the
 * heir's signing-key fingerprint as the owner's, and the heir's alone also
 * carries the new owner secret. This client forgets its secret.
 */
async function rotateKey({ kickId = null, heirId = null, left = '' } = {}) {
  const r = state.room;
  const signatures = state.signatures;
  if (!r || r.closed || !r.ownerSecret || !state.conn || !state.conn.isOpen()) return;
  const heir = heirId ? signatures.peers.get(heirId) : null;
  if (heirId && (!heir || !heir.dh || !signatures.dh || !signatures.canSign || !r.members.has(heirId))) {
    toast('This member cannot receive the room: its app announced no key to seal it to.');
    return;
  }
  const name = kickId ? memberName(kickId) : '';
  const heirName = heirId ? memberName(heirId) : '';
  const keyEncoded = await exportRoomKey(await generateRoomKey());
  const epoch = r.epoch + 1;
  const passwordHash = await joinPasswordOf(keyEncoded, r.roomId);
  const conn = state.conn;
  // The secret the owner actions below carry: the heir's once the hand-over is done.
  let secret = r.ownerSecret;
  let heirSecret = null;
  if (heir) {
    heirSecret = await newOwnerSecret();
    r.unconfirmedSecret = '';
    const answered = awaitRoomSecret();
    conn.send(C.SET_ROOM_SECRET, { owner: r.ownerSecret, password: passwordHash, ownerHash: heirSecret.hash });
    try {
      await answered;
    } catch (err) {
      // Errors are not tied to the frame they answer: if this one was not
      // SetRoomSecret's, its RoomSecretSet may still come (handleMessage).
      r.unconfirmedSecret = heirSecret.secret;
      systemLine(`The room could not be handed over (${err && err.message ? err.message : err}); you are still its owner.`, 'warn');
      return;
    }
    if (state.room !== r || r.closed) return;
    secret = heirSecret.secret;
    if (!r.members.has(heirId)) {
      // The heir left meanwhile: the room's hash is already its secret, so
      // this client keeps that one and finishes a plain rotation.
      r.ownerSecret = secret;
      heirId = null;
      systemLine(`${heirName} left before the hand-over finished: you are still the owner.`, 'warn');
    }
  } else {
    conn.send(C.SET_ROOM_SECRET, { owner: secret, password: passwordHash });
  }
  if (kickId) conn.send(C.KICK, { owner: secret, id: kickId, reason: 'kicked' });
  const content = { text: '', type: 'rekey', epoch, key: keyEncoded };
  if (heirId) content.owner = heir.ownerFp;
  const rekey = await signatures.signed(content);
  const heirRekey = heirId ? await signatures.signed({ ...content, secret: heirSecret.secret, autoRotate: r.autoRotate }) : null;
  let sent = 0;
  for (const m of [...r.members.values()]) {
    if (m.id === r.myId || m.id === kickId) continue;
    const peer = signatures.peers.get(m.id);
    const payload = m.id === heirId ? heirRekey : rekey;
    if (payload && signatures.dh && peer && peer.dh) {
      const sealed = await sealRekey({ ownerDh: signatures.dh, memberDhB64: peer.dh, roomId: r.roomId, epoch, payload });
      conn.send(C.SEND_DIRECT, { to: m.id, ...sealed });
      sent += 1;
    } else {
      conn.send(C.KICK, { owner: secret, id: m.id, reason: 'rekeyed' });
    }
  }
  await switchKey(r, keyEncoded, epoch, passwordHash);
  const keyLine = `The room key changed (epoch ${epoch}) and went to ${sent} member${sent === 1 ? '' : 's'}; old invite links no longer work, share the new one.`;
  if (heirId) {
    r.ownerSecret = '';
    r.autoRotate = false;
    r.owner = heir.ownerFp;
    forgetOwner(tabStore(), r.roomId);
    renderOwnerControls();
    renderMembers();
    renderShareLink();
    systemLine(`You handed the room over to ${heirName}: only they can remove members now. ${keyLine}`, 'warn');
    return;
  }
  persistOwner();
  const what = kickId ? `You removed ${name}. ` : left ? `${left} left and this room changes its key then. ` : '';
  systemLine(`${what}${keyLine}`, 'warn');
}

/** Moves the room to a new key and epoch. */
async function switchKey(r, keyEncoded, epoch, passwordHash) {
  r.prevKey = r.key;
  r.key = await importRoomKey(keyEncoded);
  r.keyEncoded = keyEncoded;
  r.epoch = epoch;
  r.passwordHash = passwordHash;
  r.hasPassword = true;
  state.signatures.epoch = epoch;
  renderShareLink();
}

/** A directed message: only a rekey from the room owner is understood. */
async function onDirect(d) {
  const r = state.room;
  const signatures = state.signatures;
  if (r.closed || typeof d.senderId !== 'string' || typeof d.iv !== 'string' || typeof d.ciphertext !== 'string') return;
  const peer = signatures.peers.get(d.senderId);
  // Only from the member whose signing key the invite link named as owner.
  if (!peer || !peer.dh || !signatures.dh || !r.owner || peer.ownerFp !== r.owner) {
    systemLine(`${memberName(d.senderId)} sent a room key, but is not the room owner this invite named: ignored.`, 'warn');
    return;
  }
  const epoch = r.epoch + 1;
  let payload;
  try {
    payload = await openRekey({ myDh: signatures.dh, ownerDhB64: peer.dh, roomId: r.roomId, epoch, iv: d.iv, ciphertext: d.ciphertext });
  } catch {
    systemLine('A new room key arrived but could not be opened: ignored.', 'warn');
    return;
  }
  const valid = payload && payload.type === 'rekey' && payload.epoch === epoch && typeof payload.key === 'string'
    && await signatures.verifiedFrom(d.senderId, payload);
  if (!valid) {
    systemLine('A new room key arrived without a valid owner signature: ignored.', 'warn');
    return;
  }
  try {
    await switchKey(r, payload.key, epoch, await joinPasswordOf(payload.key, r.roomId));
  } catch {
    return;
  }
  systemLine(`The room owner changed the room key (epoch ${epoch}). Old invite links no longer work; use the new one.`, 'warn');
  // A hand-over (docs/SECURITY.md §5.1): the owner names its heir's signing key.
  if (typeof payload.owner === 'string' && HEX32.test(payload.owner) && payload.owner !== r.owner) {
    await takeOwnerChange(r, d.senderId, payload);
  }
}

/** The owner handed the room over: to this member (with the secret) or to another one. */
async function takeOwnerChange(r, fromId, payload) {
  const signatures = state.signatures;
  r.owner = payload.owner;
  const from = memberName(fromId);
  const mine = payload.owner === await signatures.ownFingerprint(OWNER_FINGERPRINT);
  if (mine && typeof payload.secret === 'string' && HEX64.test(payload.secret)) {
    r.ownerSecret = payload.secret;
    r.autoRotate = payload.autoRotate === true;
    persistOwner();
    renderOwnerControls();
    renderMembers();
    systemLine(`${from} handed this room over to you: you are its owner now.`, 'warn');
  } else {
    const heir = [...signatures.peers.values()].find((p) => p.ownerFp === payload.owner);
    systemLine(`${from} handed this room over to ${heir ? memberName(heir.id) : 'another member'}.`, 'warn');
  }
  renderShareLink();
}

function onError(d) {
  const code = typeof d.code === 'string' ? d.code : '';
  const text = errorText(code, d.msg);
  if (state.pendingSecret) {
    // A hand-over's SetRoomSecret was refused (E008, E004, ...): nothing moved.
    settleRoomSecret(new Error(text));
    return;
  }
  if (state.joining) {
    joinFailed(text, code);
    return;
  }
  const r = state.room;
  if (r && r.rejoining) {
    r.rejoining = false;
    r.closed = true;
    systemLine(`Could not rejoin the room: ${text}`, 'warn');
    $('closed-text').textContent = 'The room is no longer available.';
    $('closed-bar').hidden = false;
    setComposerEnabled(false);
    return;
  }
  if (r && (code === 'E010' || code === 'E011')) {
    // The room was created, but it is not listed: it stays private.
    r.public = false;
    $('room-public').hidden = true;
    systemLine(text, 'warn');
    return;
  }
  if (r && (code === 'E003') && !r.closed) {
    onRoomClosed({});
    return;
  }
  toast(text);
}

// ------------------------------------------------------------------ composer

function autoGrow() {
  const ta = $('message-input');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 160)}px`;
}

function onComposerKey(e) {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $('composer').requestSubmit();
  }
}

// ------------------------------------------------------------------ boot

function prefillFromFragment() {
  if (location.hash.length <= 1) return false;
  // Our links (#{code}) and the original client's (#/join/{code}).
  const code = codeFromLink(location.hash);
  if (code === null || !parseShareCode(code)) return false;
  $('join-code').value = code;
  $('join-name').focus();
  $('join-form').closest('.card').classList.add('highlight');
  return true;
}

/** The room this tab owned before a reload: the join form filled in (ownerstore.js). */
function prefillOwnedRoom() {
  const kept = latestOwner(tabStore());
  if (!kept || !parseShareCode(kept.code)) return false;
  $('join-code').value = kept.code;
  if (validName(kept.name)) $('join-name').value = kept.name;
  $('owner-resume').hidden = false;
  $('join-form').closest('.card').classList.add('highlight');
  $('join-submit').focus();
  return true;
}

function init() {
  if (!globalThis.crypto || !globalThis.crypto.subtle) {
    showLandingError('This page must be opened over https (or on localhost): the browser only offers its cryptography to secure pages.');
    setBusy(true);
    return;
  }
  $('create-form').addEventListener('submit', onCreate);
  $('join-form').addEventListener('submit', onJoin);
  initDirectory({
    join: ({ code, name, password, title, onError, onJoined }) => {
      const parsed = parseShareCode(code);
      if (!parsed) onError('This room’s share code is not valid.', '');
      else startJoin(parsed, name, password, { onError, onJoined, listed: true, title });
    },
  });
  $('composer').addEventListener('submit', onSubmit);
  $('message-input').addEventListener('input', onInput);
  $('message-input').addEventListener('keydown', onComposerKey);
  $('file-input').addEventListener('change', onFileChosen);
  $('reply-cancel').addEventListener('click', cancelReply);
  $('leave-btn').addEventListener('click', leaveRoom);
  $('rotate-btn').addEventListener('click', () => ownerTask(() => rotateKey()));
  $('auto-rotate').addEventListener('change', () => {
    const r = state.room;
    if (!r || !r.ownerSecret) return;
    r.autoRotate = $('auto-rotate').checked;
    persistOwner();
    systemLine(r.autoRotate ? 'The room key will change whenever someone leaves.' : 'The room key no longer changes when someone leaves.');
  });
  $('closed-home').addEventListener('click', leaveRoom);
  $('share-toggle').addEventListener('click', () => {
    const panel = $('share-panel');
    panel.hidden = !panel.hidden;
    $('share-toggle').setAttribute('aria-expanded', String(!panel.hidden));
    if (!panel.hidden) $('share-link').select();
  });
  $('copy-link').addEventListener('click', async () => {
    const input = $('share-link');
    try {
      await navigator.clipboard.writeText(input.value);
      $('copy-status').textContent = 'Link copied.';
    } catch {
      input.select();
      $('copy-status').textContent = 'Press Ctrl+C (⌘C) to copy the selected link.';
    }
  });
  $('members-toggle').addEventListener('click', () => {
    const open = !$('members').classList.contains('open');
    $('members').classList.toggle('open', open);
    $('members-toggle').setAttribute('aria-expanded', String(open));
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('share-panel').hidden) {
      $('share-panel').hidden = true;
      $('share-toggle').setAttribute('aria-expanded', 'false');
      $('share-toggle').focus();
    }
  });
  window.addEventListener('online', () => state.conn && state.conn.retryNow());

  // An invite link opens the join form pre-filled (the fragment stays local);
  // else a room this tab owned before a reload is offered again.
  if (!prefillFromFragment() && !prefillOwnedRoom()) $('create-name').focus();
  window.addEventListener('hashchange', () => {
    if (!state.room) prefillFromFragment();
  });
  document.documentElement.dataset.ready = 'true';
}

init();

// Who signed what in one room session: this member's signing key, the keys
// the other members announced, and the verdict on every incoming message.
//
// The scheme (the primitives are in crypto.js): a fresh Ed25519 key pair per
// room session; its public key is announced as an encrypted chat payload
// {text: "", type: "pubkey", pubkey, sig}; `sig` signs the canonical JSON of
// the payload without `sig`. Trust on first use: the first key a member
// announces is theirs for the session, a different one later is refused, and
// a signed announcement must be signed by the key it announces. A signed
// message that arrives before its sender's key waits (at most
// MAX_WAITING_PER_SENDER per sender, for KEY_WAIT_MS) and is settled when the
// key arrives.
//
// Pure logic: no DOM and no timers (the clock is injected), so Node's test
// runner covers it (tests/unit/signatures.test.mjs). The UI only shows the
// verdicts.
//
// Binding (docs/SECURITY.md §5.5): a session that knows its room signs
// {room, epoch, ctr} into every payload (ctr counts this session's messages
// from 1) and its announcement carries `room` and, when the browser has
// X25519, `dh` (the key-agreement key rotation uses). A signed payload for
// another room fails; a counter seen before from that sender is REPLAYED, one
// below the highest seen is REORDERED. Announcements must be signed by the key
// they announce. Signed payloads without a counter (other Arthas clients)
// verify as before, without the order check; unsigned ones stay UNKNOWN.
//
// Gaps: a counter that jumps past the next one (frames the relay dropped or
// withholds) is recorded as a gap event {kind: 'gap', senderId, from, to,
// count}; a missing counter that arrives later (reordered) as {kind:
// 'filled', senderId, ctr}. The UI takes them with takeGapEvents(). The
// first counter seen from a member is its baseline: what it sent before we
// joined (or before the first frame we got) is not a gap.

import { buildPayload, generateSigningKeyPair, importVerifyKey, verifyPayload } from './crypto.js';
import { fingerprint, OWNER_FINGERPRINT } from './rekey.js';

/** What the UI shows for a received message. */
export const VERDICT = Object.freeze({
  /** The signature matches the key its sender announced. */
  VERIFIED: 'verified',
  /** Nothing to check: no signature, or the sender's key is not known (yet). */
  UNKNOWN: 'unknown',
  /** The signature does not match the sender's key (or names another room): possibly forged. */
  FAILED: 'failed',
  /** Signed and valid, but this sender's counter was seen before: the relay replayed it. */
  REPLAYED: 'replayed',
  /** Signed and valid, but it arrived after a later message of its sender. */
  REORDERED: 'reordered',
});

/** What became of a key announcement. */
export const ANNOUNCEMENT = Object.freeze({
  /** The sender's first key: learned. */
  LEARNED: 'learned',
  /** The key already known for this sender, announced again (after a join or a reconnect). */
  SAME: 'same',
  /** A different key from a sender whose key is known: ignored (first key wins). */
  CONFLICT: 'conflict',
  /** Not a usable key, or signed by another key: ignored. */
  INVALID: 'invalid',
});

/** Signed messages per sender that may wait for the sender's key. */
export const MAX_WAITING_PER_SENDER = 50;
/** How long a signed message waits for its sender's key, milliseconds. */
export const KEY_WAIT_MS = 60_000;
/** Counters remembered per sender for the replay check. */
export const MAX_SEEN_COUNTERS = 1024;
/** Missing counters remembered per sender (to recognise a late one): those in the replay window. */
export const MAX_MISSING_COUNTERS = MAX_SEEN_COUNTERS;

/** The signatures of one room session, from one member's point of view. */
export class RoomSignatures {
  /** A session with a fresh key pair (unsigned when the browser has no Ed25519). */
  static async start(options) {
    return new RoomSignatures(await generateSigningKeyPair(), options);
  }

  /** This member's key fingerprint (`hexDigits` long), or '' when it cannot sign. */
  async ownFingerprint(hexDigits) {
    return this.signing ? fingerprint(this.signing.publicKeyB64, hexDigits) : '';
  }

  /**
   * @param signing {privateKey, publicKeyB64} of this member, or null when it cannot sign
   * @param options.now the clock, milliseconds (tests pass their own)
   */
  constructor(signing, { now = () => Date.now(), maxWaitingPerSender = MAX_WAITING_PER_SENDER, keyWaitMs = KEY_WAIT_MS, roomId = null, epoch = 0, dh = null } = {}) {
    /** This member's key pair, or null. */
    this.signing = signing;
    /** The room this session signs for (null: unbound, as before). */
    this.roomId = roomId;
    /** The room key's epoch (docs/SECURITY.md §5.3). */
    this.epoch = epoch;
    /** This member's X25519 pair ({privateKey, publicKeyB64}), or null. */
    this.dh = dh;
    /** The counter of the last payload this member signed. */
    this.ctr = 0;
    this.now = now;
    this.maxWaitingPerSender = maxWaitingPerSender;
    this.keyWaitMs = keyWaitMs;
    /** senderId -> Peer {key: CryptoKey, encoded: base64url public key} */
    this.peers = new Map();
    /** senderId -> [{subject, payload, until}]: signed messages waiting for the sender's key */
    this.waiting = new Map();
    /** Gap events not taken yet (bounded: the oldest go first). */
    this.gapEvents = [];
  }

  /** The gap events since the last call ({kind: 'gap'|'filled', ...}), oldest first. */
  takeGapEvents() {
    const events = this.gapEvents;
    this.gapEvents = [];
    return events;
  }

  #gapEvent(event) {
    this.gapEvents.push(event);
    if (this.gapEvents.length > MAX_MISSING_COUNTERS) this.gapEvents.shift();
  }

  /** Whether this member signs what it sends. */
  get canSign() {
    return !!this.signing;
  }

  /** The chat payload for `content` ({text, reply?}), signed (and bound) when this member can sign. */
  sign(content) {
    if (!this.signing) return buildPayload(content, null);
    const bound = this.roomId === null ? {} : { room: this.roomId, epoch: this.epoch, ctr: ++this.ctr };
    return buildPayload({ ...content, ...bound }, this.signing.privateKey);
  }

  /** This member's key announcement, or null when it cannot sign. */
  async announcement() {
    if (!this.signing) return null;
    const bound = this.roomId === null ? {} : { room: this.roomId };
    if (this.dh) bound.dh = this.dh.publicKeyB64;
    return buildPayload({ text: '', type: 'pubkey', pubkey: this.signing.publicKeyB64, ...bound }, this.signing.privateKey);
  }

  /** A payload of another kind (a rekey), signed and bound to the room. */
  signed(content) {
    if (!this.signing) return null;
    return buildPayload({ ...content, room: this.roomId }, this.signing.privateKey);
  }

  /** Whether `payload` is validly signed by `senderId`'s learned key and names this room. */
  async verifiedFrom(senderId, payload) {
    const peer = this.peers.get(senderId);
    if (!peer || !payload || payload.room !== this.roomId) return false;
    return verifyPayload(peer.key, payload);
  }

  /** Where a valid signed payload sits in its sender's sequence. */
  #verdict(peer, payload, valid) {
    if (!valid) return VERDICT.FAILED;
    if (payload.room !== undefined && payload.room !== this.roomId) return VERDICT.FAILED;
    const ctr = payload.ctr;
    if (!Number.isSafeInteger(ctr) || ctr < 1) return VERDICT.VERIFIED;
    if (peer.seen.has(ctr) || ctr <= peer.maxCtr - MAX_SEEN_COUNTERS) return VERDICT.REPLAYED;
    peer.seen.add(ctr);
    if (peer.seen.size > MAX_SEEN_COUNTERS) peer.seen.delete(peer.seen.values().next().value);
    if (ctr < peer.maxCtr) {
      if (peer.missing.delete(ctr)) this.#gapEvent({ kind: 'filled', senderId: peer.id, ctr });
      return VERDICT.REORDERED;
    }
    if (peer.maxCtr > 0 && ctr > peer.maxCtr + 1) {
      const from = peer.maxCtr + 1;
      const to = ctr - 1;
      // Only the counters a late frame could still fill (the replay window).
      for (let c = Math.max(from, ctr - MAX_MISSING_COUNTERS); c <= to; c++) peer.missing.add(c);
      for (const c of peer.missing) {
        if (peer.missing.size <= MAX_MISSING_COUNTERS && c > ctr - MAX_MISSING_COUNTERS) break;
        peer.missing.delete(c);
      }
      this.#gapEvent({ kind: 'gap', senderId: peer.id, from, to, count: to - from + 1 });
    }
    peer.maxCtr = ctr;
    return VERDICT.VERIFIED;
  }

  /**
   * The verdict on a chat payload from `senderId`. A signed payload whose
   * sender's key is not known yet is UNKNOWN for now, and `subject` (anything
   * the caller uses to show the verdict later) waits for the key: `learn`
   * hands it back settled.
   */
  async check(senderId, payload, subject) {
    if (!payload || typeof payload.sig !== 'string') return VERDICT.UNKNOWN;
    const peer = this.peers.get(senderId);
    if (peer) return this.#verdict(peer, payload, await verifyPayload(peer.key, payload));
    this.#wait(senderId, payload, subject);
    return VERDICT.UNKNOWN;
  }

  /**
   * Take in a key announcement from `senderId`. Returns {outcome, settled}:
   * the ANNOUNCEMENT outcome and, when the key was learned, the verdicts on
   * the messages that were waiting for it ([{subject, verdict}]).
   */
  async learn(senderId, announcement) {
    const known = this.#knownOutcome(senderId, announcement);
    if (known) return { outcome: known, settled: [] };
    let key;
    try {
      key = await importVerifyKey(announcement.pubkey);
    } catch {
      return { outcome: ANNOUNCEMENT.INVALID, settled: [] };
    }
    // Only signed announcements count: an unsigned one could be anyone's.
    if (!(await verifyPayload(key, announcement))) {
      return { outcome: ANNOUNCEMENT.INVALID, settled: [] };
    }
    if (announcement.room !== undefined && announcement.room !== this.roomId) {
      return { outcome: ANNOUNCEMENT.INVALID, settled: [] };
    }
    const dh = typeof announcement.dh === 'string' && announcement.dh.length === 43 ? announcement.dh : null;
    const fp = await fingerprint(announcement.pubkey);
    const ownerFp = await fingerprint(announcement.pubkey, OWNER_FINGERPRINT);
    // Another announcement of this sender may have been learned meanwhile.
    const raced = this.#knownOutcome(senderId, announcement);
    if (raced) return { outcome: raced, settled: [] };
    const peer = { id: senderId, key, encoded: announcement.pubkey, dh, fp, ownerFp, maxCtr: 0, seen: new Set(), missing: new Set() };
    this.peers.set(senderId, peer);
    const now = this.now();
    const waiting = this.waiting.get(senderId) || [];
    this.waiting.delete(senderId);
    const settled = [];
    for (const w of waiting) {
      if (w.until > now) settled.push({ subject: w.subject, verdict: this.#verdict(peer, w.payload, await verifyPayload(key, w.payload)) });
    }
    return { outcome: ANNOUNCEMENT.LEARNED, settled };
  }

  /** INVALID, SAME or CONFLICT when the announcement changes nothing; else null. */
  #knownOutcome(senderId, announcement) {
    if (!announcement || typeof announcement.pubkey !== 'string') return ANNOUNCEMENT.INVALID;
    const known = this.peers.get(senderId);
    if (!known) return null;
    return known.encoded === announcement.pubkey ? ANNOUNCEMENT.SAME : ANNOUNCEMENT.CONFLICT;
  }

  #wait(senderId, payload, subject) {
    const now = this.now();
    this.#forgetExpired(now);
    let list = this.waiting.get(senderId);
    if (!list) {
      list = [];
      this.waiting.set(senderId, list);
    }
    if (list.length >= this.maxWaitingPerSender) return;
    list.push({ subject, payload, until: now + this.keyWaitMs });
  }

  /** Drops messages that waited too long (their payloads with them). */
  #forgetExpired(now) {
    for (const [senderId, list] of this.waiting) {
      const live = list.filter((w) => w.until > now);
      if (live.length) this.waiting.set(senderId, live);
      else this.waiting.delete(senderId);
    }
  }
}

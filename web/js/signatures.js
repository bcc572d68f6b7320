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
// Room to grow: the UI signs and verifies only through this module, and what
// a signature covers is decided in one place (`signableBytes` in crypto.js).
// Binding signatures to the room id, a key epoch or a per-sender counter
// changes that function and the per-session `RoomSignatures` that would hold
// them; a member's peer entry is where a counter or a key-agreement public
// key would be kept.

import { buildPayload, generateSigningKeyPair, importVerifyKey, verifyPayload } from './crypto.js';

/** What the UI shows for a received message. */
export const VERDICT = Object.freeze({
  /** The signature matches the key its sender announced. */
  VERIFIED: 'verified',
  /** Nothing to check: no signature, or the sender's key is not known (yet). */
  UNKNOWN: 'unknown',
  /** The signature does not match the sender's key: possibly forged. */
  FAILED: 'failed',
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

const verdictOf = (valid) => (valid ? VERDICT.VERIFIED : VERDICT.FAILED);

/** The signatures of one room session, from one member's point of view. */
export class RoomSignatures {
  /** A session with a fresh key pair (unsigned when the browser has no Ed25519). */
  static async start(options) {
    return new RoomSignatures(await generateSigningKeyPair(), options);
  }

  /**
   * @param signing {privateKey, publicKeyB64} of this member, or null when it cannot sign
   * @param options.now the clock, milliseconds (tests pass their own)
   */
  constructor(signing, { now = () => Date.now(), maxWaitingPerSender = MAX_WAITING_PER_SENDER, keyWaitMs = KEY_WAIT_MS } = {}) {
    /** This member's key pair, or null. */
    this.signing = signing;
    this.now = now;
    this.maxWaitingPerSender = maxWaitingPerSender;
    this.keyWaitMs = keyWaitMs;
    /** senderId -> Peer {key: CryptoKey, encoded: base64url public key} */
    this.peers = new Map();
    /** senderId -> [{subject, payload, until}]: signed messages waiting for the sender's key */
    this.waiting = new Map();
  }

  /** Whether this member signs what it sends. */
  get canSign() {
    return !!this.signing;
  }

  /** The chat payload for `content` ({text, reply?}), signed when this member can sign. */
  sign(content) {
    return buildPayload(content, this.signing && this.signing.privateKey);
  }

  /** This member's key announcement, or null when it cannot sign. */
  async announcement() {
    if (!this.signing) return null;
    return buildPayload({ text: '', type: 'pubkey', pubkey: this.signing.publicKeyB64 }, this.signing.privateKey);
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
    if (peer) return verdictOf(await verifyPayload(peer.key, payload));
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
    if (announcement.sig !== undefined && !(await verifyPayload(key, announcement))) {
      return { outcome: ANNOUNCEMENT.INVALID, settled: [] };
    }
    // Another announcement of this sender may have been learned meanwhile.
    const raced = this.#knownOutcome(senderId, announcement);
    if (raced) return { outcome: raced, settled: [] };
    this.peers.set(senderId, { key, encoded: announcement.pubkey });
    const now = this.now();
    const waiting = this.waiting.get(senderId) || [];
    this.waiting.delete(senderId);
    const settled = [];
    for (const w of waiting) {
      if (w.until > now) settled.push({ subject: w.subject, verdict: verdictOf(await verifyPayload(key, w.payload)) });
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

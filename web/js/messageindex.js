// The room's messages by stable id, `{senderId}:{t}`: the id a reaction
// names its message by. A sender stamps its own message with its local
// clock, every other member with the server's relay time `t`; the two never
// agree exactly, so a lookup that misses falls back to the same sender's
// message closest in time, within STABLE_ID_TOLERANCE_MS.

/** How far apart two clocks' stamps of one message may be, milliseconds. */
export const STABLE_ID_TOLERANCE_MS = 15_000;

/** The stable id of `senderId`'s message stamped `t` (unix milliseconds). */
export function stableIdOf(senderId, t) {
  return `${senderId}:${t}`;
}

/** Records ({senderId, time, …}) by stable id. */
export class MessageIndex {
  constructor(toleranceMs = STABLE_ID_TOLERANCE_MS) {
    this.toleranceMs = toleranceMs;
    /** stableId -> record */
    this.byId = new Map();
  }

  set(stableId, record) {
    this.byId.set(stableId, record);
  }

  delete(stableId) {
    this.byId.delete(stableId);
  }

  clear() {
    this.byId.clear();
  }

  /** The record of exactly `stableId`, else the same sender's closest in time, else null. */
  find(stableId) {
    const exact = this.byId.get(stableId);
    if (exact) return exact;
    const i = stableId.lastIndexOf(':');
    if (i <= 0) return null;
    const sender = stableId.slice(0, i);
    const t = Number(stableId.slice(i + 1));
    if (!Number.isFinite(t)) return null;
    let best = null;
    let bestDiff = this.toleranceMs;
    for (const rec of this.byId.values()) {
      if (rec.senderId !== sender) continue;
      const diff = Math.abs(rec.time - t);
      if (diff <= bestDiff) {
        best = rec;
        bestDiff = diff;
      }
    }
    return best;
  }
}

// Sliding-window limiter: at most `limit` events in any `windowMs` span.
// The client keeps its own chat limit (10 per 10 s) a little stricter than
// the server's by adding a safety margin for network jitter.

export class SlidingWindowLimiter {
  constructor(limit, windowMs, now = () => Date.now()) {
    this.limit = limit;
    this.windowMs = windowMs;
    this.now = now;
    this.times = [];
  }

  prune() {
    const cutoff = this.now() - this.windowMs;
    while (this.times.length && this.times[0] <= cutoff) this.times.shift();
  }

  /** Milliseconds until one more event is allowed (0 = now). */
  msUntilFree() {
    this.prune();
    if (this.times.length < this.limit) return 0;
    return Math.max(1, this.times[0] + this.windowMs - this.now() + 1);
  }

  record() {
    this.times.push(this.now());
  }

  /** Record and return true when allowed now, else false. */
  tryTake() {
    if (this.msUntilFree() > 0) return false;
    this.record();
    return true;
  }

  reset() {
    this.times = [];
  }
}

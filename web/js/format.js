// Durations as the UI writes them: a room's message lifetime and the
// countdown to its expiry.

/** A lifetime in seconds, rounded to its largest unit: "30 s", "5 min", "2 h", "7 d". */
export function formatDuration(secs) {
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.round(secs / 60)} min`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h`;
  return `${Math.round(secs / 86400)} d`;
}

/** The expiry badge for `secs` seconds left: days and hours, hours and minutes, or m:ss. */
export function formatRemaining(secs) {
  if (secs <= 0) return 'Expiring now';
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d > 0) return `Expires in ${d}d ${h}h`;
  if (h > 0) return `Expires in ${h}h ${String(m).padStart(2, '0')}m`;
  return `Expires in ${m}:${String(s).padStart(2, '0')}`;
}

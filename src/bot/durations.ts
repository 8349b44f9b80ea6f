/**
 * Run times as people type them (`30m`, `2h`, `1h30m`, `90m`, `1d`) and as the bot writes them
 * (`1 h 30 min`). Minutes are the smallest unit: nobody runs an AI agent for seconds, and tests use
 * an injected clock instead (src/bot/clock.ts).
 */

export const MINUTE_MS = 60_000;
const UNIT_MS: Readonly<Record<string, number>> = { d: 24 * 60 * MINUTE_MS, h: 60 * MINUTE_MS, m: MINUTE_MS };
/** One or more `<number><unit>` parts, largest unit first, each unit at most once: `1d2h30m`, `90m`, `2 h`. */
const GRAMMAR = /^(?:(\d{1,4})\s*d)?\s*(?:(\d{1,5})\s*h)?\s*(?:(\d{1,6})\s*m(?:in)?)?$/;
/** Anything longer is surely a typo (and would not fit a timer's arithmetic comfortably). */
export const LONGEST_MS = 366 * UNIT_MS['d']!;

/** Milliseconds, or undefined when the text is not a duration of at least one minute. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim().toLowerCase();
  if (t === '') return undefined;
  const m = GRAMMAR.exec(t);
  if (!m || (m[1] === undefined && m[2] === undefined && m[3] === undefined)) return undefined;
  const ms = Number(m[1] ?? 0) * UNIT_MS['d']! + Number(m[2] ?? 0) * UNIT_MS['h']! + Number(m[3] ?? 0) * UNIT_MS['m']!;
  return ms >= MINUTE_MS && ms <= LONGEST_MS ? ms : undefined;
}

/** `1 h 12 min`, `45 min`, `2 d 3 h`; under a minute: `less than a minute`. Rounded to the nearest minute. */
export function formatDuration(ms: number): string {
  const minutes = Math.round(ms / MINUTE_MS);
  if (minutes < 1) return 'less than a minute';
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const min = minutes % 60;
  const parts = [d ? `${d} d` : '', h ? `${h} h` : '', min && d === 0 ? `${min} min` : ''].filter(Boolean);
  return parts.length > 0 ? parts.join(' ') : `${d} d`;
}

/** The typed form (`1h30m`, `2h`, `1d`): for commands the bot suggests and for audit notes. */
export function compactDuration(ms: number): string {
  const minutes = Math.max(1, Math.round(ms / MINUTE_MS));
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const min = minutes % 60;
  return `${d ? `${d}d` : ''}${h ? `${h}h` : ''}${min ? `${min}m` : ''}`;
}

/**
 * Clock times in chat, in one configured time zone (`bot.timeZone`): the bot cannot know each
 * reader's zone, so it uses the operator's and names it (`16:02 UTC`, `16:02 CEST`).
 *
 * UTC, the default, is formatted by hand. Any other zone goes through Intl, and the first use of
 * Intl maps ICU's data into the process: measured +8 MiB resident on Node 24 (42 → 50 MiB for a
 * bare process), so it is only paid when a zone is configured.
 */

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAY_MS = 86_400_000;

interface Local { readonly year: number; readonly month: number; readonly day: number; readonly hour: number; readonly minute: number; readonly zone: string }

export class TimeText {
  readonly timeZone: string;
  readonly #parts: (ms: number) => Local;

  /** Throws a RangeError for a zone Intl does not know. */
  constructor(timeZone = 'UTC') {
    this.timeZone = timeZone;
    if (isUtc(timeZone)) {
      this.#parts = (ms) => {
        const d = new Date(ms);
        return { year: d.getUTCFullYear(), month: d.getUTCMonth(), day: d.getUTCDate(), hour: d.getUTCHours(), minute: d.getUTCMinutes(), zone: 'UTC' };
      };
      return;
    }
    const format = new Intl.DateTimeFormat('en-GB', {
      timeZone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', timeZoneName: 'short',
    });
    this.#parts = (ms) => {
      const p = Object.fromEntries(format.formatToParts(ms).map((x) => [x.type, x.value]));
      return { year: Number(p['year']), month: Number(p['month']) - 1, day: Number(p['day']), hour: Number(p['hour']), minute: Number(p['minute']), zone: p['timeZoneName'] ?? timeZone };
    };
  }

  /** `16:02`, or with the day when it is not today: `16:02 tomorrow`, `16:02 on 17 Jun`. */
  time(ms: number, now: number): string {
    const t = this.#parts(ms);
    const hm = `${pad(t.hour)}:${pad(t.minute)}`;
    const today = this.#parts(now);
    if (sameDay(t, today)) return hm;
    if (sameDay(t, this.#parts(now + DAY_MS))) return `${hm} tomorrow`;
    if (sameDay(t, this.#parts(now - DAY_MS))) return `${hm} yesterday`;
    return `${hm} on ${t.day} ${MONTHS[t.month]}${t.year === today.year ? '' : ` ${t.year}`}`;
  }

  /** As `time`, with the zone's name: `16:02 UTC`, `16:02 tomorrow CEST`. */
  timeWithZone(ms: number, now: number): string {
    return `${this.time(ms, now)} ${this.#parts(ms).zone}`;
  }
}

export function isUtc(timeZone: string): boolean {
  return ['utc', 'etc/utc', 'gmt', 'etc/gmt', 'z', 'zulu'].includes(timeZone.toLowerCase());
}

/** A machine-readable UTC time to the minute, for audit notes: `2025-06-14T16:02Z`. */
export function utcStamp(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16) + 'Z';
}

const pad = (n: number): string => String(n).padStart(2, '0');
const sameDay = (a: Local, b: Local): boolean => a.year === b.year && a.month === b.month && a.day === b.day;

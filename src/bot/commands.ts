/** The command table and the parser: text in, a command name (or why not) out. */
import { parseDuration } from './durations.ts';

export type CommandName = 'start' | 'stop' | 'extend' | 'status' | 'help';

export const COMMANDS: ReadonlyArray<{ readonly name: CommandName | 'approve'; readonly aliases: readonly string[]; readonly summary: string }> = [
  { name: 'start', aliases: ['start', 'on'], summary: 'scale the deployment to 1 replica' },
  { name: 'start', aliases: ['start 2h', 'on 30m'], summary: 'start it, and stop it again automatically after that time (1h30m, 90m and 1d work too)' },
  { name: 'extend', aliases: ['extend 1h'], summary: 'add time before the automatic stop' },
  { name: 'stop', aliases: ['stop', 'off'], summary: 'scale the deployment to 0 replicas (and cancel the automatic stop)' },
  { name: 'status', aliases: ['status'], summary: 'show desired, ready, available and updated replicas, and when it stops' },
  { name: 'help', aliases: ['help'], summary: 'show this list' },
  { name: 'approve', aliases: ['approve DEVICEID'], summary: 'from a device of yours I already obey: let me obey your new device too (needed only when your account has no cross-signing)' },
];

/** Words that name a command; which of them take a run time is decided in `parseCommand`. */
const BY_WORD: ReadonlyMap<string, CommandName> = new Map([
  ['start', 'start'], ['on', 'start'], ['stop', 'stop'], ['off', 'stop'], ['extend', 'extend'], ['status', 'status'], ['help', 'help'],
]);

export type Parsed =
  /** `duration` (ms): `start 2h`, `extend 30m`; absent for a bare `start`. */
  | { readonly kind: 'command'; readonly name: CommandName; readonly word: string; readonly duration?: number }
  /** A command word with an argument it cannot take (`start soon`, `extend` alone, `stop 5m`): answered with the right form. */
  | { readonly kind: 'invalid'; readonly name: CommandName; readonly word: string; readonly argument: string }
  /**
   * `approve DEVICEID`: not a Kubernetes command, so not a `command` (its own trust rules, in the bot).
   * `deviceId` keeps its case (device ids are case-sensitive); empty when none was given.
   */
  | { readonly kind: 'approve'; readonly word: string; readonly deviceId: string }
  | { readonly kind: 'unknown'; readonly word: string }
  /** Not addressed to the bot (no configured prefix); stays silent. */
  | { readonly kind: 'ignore' };

/**
 * Case- and whitespace-insensitive. With a prefix configured (`!toggle`), only `!toggle <word>`
 * is addressed to the bot. Without one, a leading `!` or `/` is tolerated (`!status`), since
 * people type those out of habit. `start` and `on` take an optional run time, `extend` a required
 * one (`for`/`by` before it are allowed: `start for 2h`, `extend by 30m`).
 */
export function parseCommand(text: string, prefix: string): Parsed {
  let rest = text.trim();
  if (prefix) {
    if (rest.toLowerCase() !== prefix.toLowerCase() && !rest.toLowerCase().startsWith(`${prefix.toLowerCase()} `)) return { kind: 'ignore' };
    rest = rest.slice(prefix.length).trim();
    if (rest === '') return { kind: 'command', name: 'help', word: 'help' };
  } else {
    rest = rest.replace(/^[!/]/, '');
  }
  const word = rest.toLowerCase().replace(/\s+/g, ' ').replace(/[.!?]+$/, '');
  if (word === '') return { kind: 'ignore' };
  const [head = '', ...tail] = word.split(' ');
  if (head === 'approve') {
    const [deviceId = '', ...more] = rest.replace(/[.!?]+$/, '').trim().split(/\s+/).slice(1);
    if (more.length > 0 || deviceId.length > 64) return { kind: 'unknown', word: rest.slice(0, 80) };
    return { kind: 'approve', word: deviceId ? `approve ${deviceId}` : 'approve', deviceId };
  }
  const name = BY_WORD.get(head);
  if (!name) return { kind: 'unknown', word: rest.slice(0, 80) };
  const argument = tail.join(' ').replace(/^(for|by) /, '');
  if (argument === '') return name === 'extend' ? { kind: 'invalid', name, word, argument } : { kind: 'command', name, word };
  const duration = name === 'start' || name === 'extend' ? parseDuration(argument) : undefined;
  if (duration !== undefined) return { kind: 'command', name, word, duration };
  // "status please" and the like were unknown before run times existed; only words that take one are explained.
  if (name !== 'start' && name !== 'extend' && name !== 'stop') return { kind: 'unknown', word: rest.slice(0, 80) };
  return { kind: 'invalid', name, word, argument: argument.slice(0, 40) };
}

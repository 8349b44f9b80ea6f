/** The command table and the parser: text in, a command name (or why not) out. */
import { parseDuration } from './durations.ts';

export type CommandName = 'start' | 'stop' | 'extend' | 'status' | 'help';

export const COMMANDS: ReadonlyArray<{ readonly name: CommandName | 'approve'; readonly aliases: readonly string[]; readonly summary: string }> = [
  { name: 'start', aliases: ['start', 'on'], summary: 'scale the deployment up (to 1 replica unless the operator set more)' },
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
  /**
   * `duration` (ms): `start 2h`, `extend 30m`; absent for a bare `start`. `target`: the word naming
   * a target (`start comfy 2h`), as typed (lower case), not checked against the targets yet.
   */
  | { readonly kind: 'command'; readonly name: CommandName; readonly word: string; readonly duration?: number; readonly target?: string }
  /** A command word with an argument it cannot take (`start soon`, `extend` alone, `stop 5m`): answered with the right form. */
  | { readonly kind: 'invalid'; readonly name: CommandName; readonly word: string; readonly argument: string; readonly target?: string }
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
/** The targets' names and aliases (lower case), and whether there are several (then a command's first word after it is a target's name). */
export interface TargetWords {
  readonly names: ReadonlySet<string>;
  readonly several: boolean;
}

/** A word that begins a run time (`2h`, `for 2h`), never a target's name. */
const beginsTime = (word: string): boolean => word === 'for' || word === 'by' || /^\d/.test(word);

export function parseCommand(text: string, prefix: string, targets?: TargetWords): Parsed {
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
  // The target's name comes first (`start comfy 2h`) or last (`start 2h comfy`); with several targets,
  // a first word that is no run time is taken as a name, so that a typo is answered as one.
  let after = tail;
  let target: string | undefined;
  if (targets && name !== 'help') {
    if (after[0] !== undefined && targets.names.has(after[0])) [target, ...after] = after;
    else if (after.length > 1 && targets.names.has(after.at(-1)!)) target = after.pop();
    else if (targets.several && after[0] !== undefined && !beginsTime(after[0])) [target, ...after] = after;
  }
  const named = target === undefined ? {} : { target };
  const argument = after.join(' ').replace(/^(for|by) /, '');
  if (argument === '') return name === 'extend' ? { kind: 'invalid', name, word, argument, ...named } : { kind: 'command', name, word, ...named };
  const duration = name === 'start' || name === 'extend' ? parseDuration(argument) : undefined;
  if (duration !== undefined) return { kind: 'command', name, word, duration, ...named };
  // "status please" and the like were unknown before run times existed; only words that take one are explained.
  if (name !== 'start' && name !== 'extend' && name !== 'stop') return { kind: 'unknown', word: rest.slice(0, 80) };
  return { kind: 'invalid', name, word, argument: argument.slice(0, 40), ...named };
}

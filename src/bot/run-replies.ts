/**
 * What the bot says about timed runs: the sentences added to start, stop and status replies, and
 * the notices of the timer (warning, automatic stop). Kept apart from the decisions (timed-runs.ts,
 * run-scheduler.ts) so that the wording can be read, and changed, in one place.
 */
import type { DeploymentTarget, KubeError } from '../kube/kube.ts';
import type { RunRecord } from '../store/state-db.ts';
import { compactDuration, formatDuration } from './durations.ts';
import { plain, shown, type Reply } from './replies.ts';
import type { TimeText } from './time-text.ts';

/** How replies name times and commands: the configured zone, the moment "now", the command prefix. */
export interface Words {
  readonly time: TimeText;
  readonly now: number;
  readonly prefix: string;
  /** With several targets, the one these words are about: commands suggested name it (`stop comfy`). */
  readonly target?: string | undefined;
}

/** A command as the person types it (with the configured prefix, and the target's name when there are several). */
export const say = (w: Words, command: string): string => {
  const [verb, ...rest] = command.split(' ');
  const named = w.target === undefined ? command : [verb, w.target, ...rest].join(' ');
  return `"${w.prefix ? `${w.prefix} ${named}` : named}"`;
};
/** `16:02 UTC, in 1 h 12 min` */
const when = (w: Words, at: number): string => `${w.time.timeWithZone(at, w.now)}, in ${formatDuration(at - w.now)}`;
const extendHint = (w: Words): string => `say ${say(w, 'extend 1h')} to keep it longer`;

/** After a start that set a stop time (`defaulted`: from `bot.defaultRunTime` or the maximum). */
export function stopsIn(w: Words, stopsAt: number, how: 'set' | 'default' | 'kept' | 'replaced', was?: number): string {
  switch (how) {
    case 'set': return ` ⏲ It stops automatically at ${when(w, stopsAt)}.`;
    case 'default': return ` ⏲ It stops automatically at ${when(w, stopsAt)} (the default run time; ${say(w, 'start 4h')} sets another).`;
    case 'kept': return ` ⏲ It still stops at ${when(w, stopsAt)}: ${extendHint(w)}.`;
    case 'replaced': return ` ⏲ It now stops at ${when(w, stopsAt)}${was === undefined ? '' : ` (instead of ${w.time.time(was, w.now)})`}.`;
  }
}

export const cancelled = (w: Words, stopsAt: number): string => ` ⏲ The automatic stop planned for ${w.time.timeWithZone(stopsAt, w.now)} is cancelled.`;

/** The line `status` adds for a Deployment running without a run started from chat. */
export function upSince(w: Words, since: number): string {
  return `Up since ${w.time.timeWithZone(since, w.now)} (${formatDuration(Math.max(0, w.now - since))}).`;
}

/** A timed run's stop, in the one-line status of all targets. */
export const stopsAtShort = (w: Words, at: number): string => `stops at ${when(w, at)}`;

/** The line `status` adds while a run started from chat is on. */
export function runLine(w: Words, run: RunRecord, running: boolean): string {
  const lead = `${running ? 'Running' : 'On'} since`;
  const since = `${lead} ${w.time.time(run.startedAt, w.now)} (started by ${run.startedBy})`;
  if (run.stopsAt === undefined) return `${lead} ${w.time.timeWithZone(run.startedAt, w.now)} (started by ${run.startedBy}), with no automatic stop.`;
  if (run.stopping) return `${since}; its automatic stop was due at ${w.time.timeWithZone(run.stopsAt, w.now)} and has not succeeded yet: I keep trying.`;
  const by = run.changedBy !== run.startedBy ? ` (set by ${run.changedBy})` : '';
  return `${since}, stops at ${when(w, run.stopsAt)}${by}.`;
}

export function tooLong(w: Words, target: DeploymentTarget, ms: number, maxMs: number): Reply {
  return plain(`⚠️ Not starting ${shown(target)} for ${formatDuration(ms)}: the longest run allowed is ${formatDuration(maxMs)} (set by the operator). Say ${say(w, `start ${compactDuration(maxMs)}`)} or less.`);
}

export function extended(w: Words, target: DeploymentTarget, run: RunRecord & { stopsAt: number }, by: number, was: number): Reply {
  return plain(`⏲ Extended by ${formatDuration(by)}: ${shown(target)} now stops at ${when(w, run.stopsAt)} (instead of ${w.time.time(was, w.now)}).`);
}

/** Said in the run's own room when someone changes the run from another room: every change names who made it. */
export function changedElsewhere(w: Words, target: DeploymentTarget, who: string, change: 'extended' | 'reset' | 'stopped', stopsAt: number): Reply {
  if (change === 'stopped') return plain(`⏹ ${who} stopped ${shown(target)} from another room; the automatic stop planned for ${w.time.timeWithZone(stopsAt, w.now)} is cancelled.`);
  const what = change === 'extended' ? 'extended the run' : 'set a new stop time';
  return plain(`⏲ ${who} ${what} of ${shown(target)} from another room: it now stops at ${when(w, stopsAt)}.`);
}

export function notExtended(w: Words, target: DeploymentTarget, newStop: number, maxMs: number, roomLeftMs: number): Reply {
  const most = roomLeftMs >= 60_000 ? `The most you can add now is ${formatDuration(roomLeftMs)}.` : 'It already runs as long as allowed.';
  return plain(`⚠️ Not extended: ${shown(target)} would then stop at ${when(w, newStop)}, and no run may end more than ${formatDuration(maxMs)} ahead (set by the operator). ${most}`);
}

export function nothingToExtend(w: Words, target: DeploymentTarget, off: boolean | undefined): Reply {
  return off
    ? plain(`${shown(target)} is off: there is no run to extend. Say ${say(w, 'start 1h')} to start it for an hour.`)
    : plain(`${shown(target)} has no automatic stop, so there is nothing to extend. Say ${say(w, 'start 1h')} to have it stop in 1 h, or ${say(w, 'stop')} to stop it now.`);
}

export function stopUnderWay(w: Words, target: DeploymentTarget): Reply {
  return plain(`${shown(target)}'s automatic stop is already under way; say ${say(w, 'start 1h')} once it is off to start it again.`);
}

/** A command word with an argument it does not take. */
export function badArgument(w: Words, name: string, argument: string): Reply {
  if (name === 'extend' && argument === '') return plain(`Say how much longer, for example ${say(w, 'extend 1h')} or ${say(w, 'extend 30m')}.`);
  if (name === 'stop') return plain(`${say(w, 'stop')} takes no time: it stops at once. For a run that stops by itself, start it with a time, e.g. ${say(w, 'start 2h')}.`);
  return plain(`I did not understand "${argument}" as a run time. Say for example ${say(w, `${name} 2h`)}, ${say(w, `${name} 30m`)} or ${say(w, `${name} 1h30m`)} (at least one minute).`);
}

const startedText = (w: Words, run: RunRecord): string => `started by ${run.startedBy} at ${w.time.time(run.startedAt, w.now)}`;

export function warning(w: Words, target: DeploymentTarget, run: RunRecord & { stopsAt: number }): Reply {
  return plain(`⏲ ${shown(target)} stops automatically in ${formatDuration(run.stopsAt - w.now)}, at ${w.time.timeWithZone(run.stopsAt, w.now)} (${startedText(w, run)}). Say ${say(w, 'extend 1h')} to keep it running longer, or ${say(w, 'stop')} to stop it now.`);
}

/** The automatic stop. `previous` 0: it was already off; `lateMs`: the bot was not running when it fell due. */
export function autoStopped(w: Words, target: DeploymentTarget, run: RunRecord & { stopsAt: number }, previous: number | undefined, lateMs: number): Reply {
  const again = `Say ${say(w, 'start')} to start it again.`;
  if (previous === 0) return plain(`⏹ The run of ${shown(target)} ${startedText(w, run)} is over (due at ${w.time.timeWithZone(run.stopsAt, w.now)}); it was already off. ${again}`);
  if (lateMs > 0) {
    return plain(`⏹ Stopped ${shown(target)} now, ${formatDuration(lateMs)} late: its run (${startedText(w, run)}) was due to stop at ${w.time.timeWithZone(run.stopsAt, w.now)}, while I was not running. ${again}`);
  }
  return plain(`⏹ Stopped ${shown(target)} automatically at ${w.time.timeWithZone(run.stopsAt, w.now)}, as planned: the run ${startedText(w, run)} is over (${formatDuration(run.stopsAt - run.startedAt)}). ${again}`);
}

export function autoStopFailed(w: Words, target: DeploymentTarget, error: KubeError, retryMs: number): Reply {
  return plain(`⚠️ Could not stop ${shown(target)} automatically: ${error.human}. I will keep trying (next in ${formatDuration(retryMs)}); say ${say(w, 'stop')} to try yourself.`);
}

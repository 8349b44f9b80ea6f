/**
 * Runs a command for the one target chosen for it, once the bot has decided it may run at all
 * (allowed sender, trusted device, a target the sender may control there): the age limit, the echo,
 * the Kubernetes call, the reply recorded before it is sent (with the rollout to follow), the
 * reply, and its buttons. A resumed start or stop that may have acted is reported, never run again.
 */
import type { Logger } from '../log.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { IncomingEvent } from '../matrix/incoming.ts';
import type { StateDb } from '../store/state-db.ts';
import type { Buttons } from './buttons.ts';
import type { CommandRunner, TargetCommand } from './command-runner.ts';
import type { Outbox } from './outbox.ts';
import type { ProgressPlan } from './progress-tracker.ts';
import * as replies from './replies.ts';
import type { Reply } from './replies.ts';
import { RUN_ROOM_PURPOSE } from './timed-runs.ts';

/** What the bot lends a command's run. */
export interface CommandFlow {
  readonly state: StateDb;
  readonly outbox: Outbox;
  readonly buttons: Buttons;
  readonly maxCommandAgeSeconds: number;
  now(): number;
  /** The echo of an accepted command (bot.echo); resolves at once when echo is off. */
  echo(event: RoomEvent, word: string, pressed: boolean): Promise<unknown>;
}

export async function runTargetCommand(
  flow: CommandFlow, incoming: IncomingEvent, runner: CommandRunner, command: TargetCommand,
  o: { readonly log: Logger; readonly resumed: boolean; readonly pressed: boolean },
): Promise<void> {
  const { event } = incoming;
  const { log, resumed, pressed } = o;
  // A resumed start or stop that had got as far as acting may have acted: it is reported, never
  // run again. One that had not got that far never reached the cluster, and simply runs.
  const writes = command.name === 'start' || command.name === 'stop';
  const mayHaveActed = resumed && writes && flow.state.wasActing(event.event_id);
  const ageSeconds = (flow.now() - event.origin_server_ts) / 1000;
  if (!mayHaveActed && flow.maxCommandAgeSeconds > 0 && ageSeconds > flow.maxCommandAgeSeconds) {
    runner.count(command.name, 'too-old');
    log.warn({ command: command.name, age_s: Math.round(ageSeconds) }, 'not running a command that arrived too late');
    await flow.outbox.reply(event, 'result', replies.tooOld(command.word, ageSeconds, flow.maxCommandAgeSeconds));
    return;
  }
  // The echo goes out while the command runs; the result waits for it, so they arrive in order.
  const echoed = flow.echo(event, command.word, pressed);
  echoed.catch(() => undefined); // awaited below; this only keeps an early failure from being "unhandled"
  let reply: Reply;
  let progress: ProgressPlan | undefined;
  let buttons = flow.buttons.carries(command);
  if (mayHaveActed) {
    log.warn({ command: command.name }, 'redelivered a command whose handling was interrupted; not running it again');
    reply = await runner.interrupted(command.word);
  } else {
    // A run time over the maximum is refused before anything is done.
    const tooLong = runner.refusal(command);
    if (tooLong) {
      buttons = false;
      runner.count(command.name, 'refused');
    } else if (writes) flow.state.markActing(event.event_id);
    const outcome = tooLong ? { reply: tooLong } : await runner.run(command, event, log);
    ({ reply, progress } = outcome);
  }
  // Recorded before anything waits: from here on, a restart re-sends this instead of guessing. With
  // it, in the same transaction, the rollout to follow: a restart finishes that message too.
  const decided = reply;
  flow.state.atomically(() => {
    if (progress) runner.progress.plan(event, progress, decided.text);
    flow.outbox.record(event, 'result', decided);
  });
  await echoed;
  const replyId = await flow.outbox.reply(event, 'result', reply);
  if (progress) runner.progress.attach(event.event_id, replyId);
  // A change of a run started in another room is told there too (recorded by the command runner, sent once).
  await flow.outbox.sendRecorded(event.event_id, RUN_ROOM_PURPOSE);
  // Last, so that neither the reply nor that notice waits for them.
  if (buttons) flow.buttons.later(event, replyId, runner.key);
}

/**
 * The bot's targets (issue 13: several Deployments from one bot), each with its own runner (timed
 * run, timer, progress messages, audit Events), and what is said about all of them at once: which
 * target a command is for, `help`, and the status of all. With one target, everything reads as it
 * did before there were targets.
 */
import type { Target } from '../config/targets.ts';
import type { RoomEvent } from '../matrix/events.ts';
import type { Parsed, TargetWords } from './commands.ts';
import { CommandRunner, type RunnerOptions, type TargetCommand } from './command-runner.ts';
import * as replies from './replies.ts';
import type { Reply } from './replies.ts';
import type { Serialize } from './run-scheduler.ts';
import { allowed, chooseTarget, choiceReply, findTarget } from './target-choice.ts';

export interface TargetRunnersOptions extends Omit<RunnerOptions, 'target' | 'replicas' | 'several'> {
  /** Never empty (config: `targets:`, or the one target of the old settings). */
  readonly targets: readonly Target[];
  readonly reactionButtons: boolean;
}

/** What a command is about, once its target is chosen. */
export type Chosen =
  | { readonly kind: 'one'; readonly runner: CommandRunner; readonly command: TargetCommand }
  /** `status` of several targets (a bare `status`). */
  | { readonly kind: 'all'; readonly runners: readonly CommandRunner[] }
  /** Answered without a target: which one?, no such target, a refusal (`runner`: of the target refused). */
  | { readonly kind: 'answer'; readonly reply: Reply; readonly outcome: 'answered' | 'refused'; readonly runner?: CommandRunner };

export class TargetRunners {
  readonly #o: TargetRunnersOptions;
  readonly #runners: ReadonlyMap<string, CommandRunner>;
  /** The runners in the configured order. */
  readonly all: readonly CommandRunner[];
  /** Names and aliases, for the parser. */
  readonly words: TargetWords;

  constructor(options: TargetRunnersOptions) {
    this.#o = options;
    const several = options.targets.length > 1;
    this.#runners = new Map(options.targets.map((t) => [t.name, new CommandRunner({
      ...options, several, replicas: t.replicas, target: { namespace: t.namespace, name: t.deployment, label: t.name },
    })]));
    this.all = [...this.#runners.values()];
    this.words = { names: new Set(options.targets.flatMap((t) => [t.name, ...t.aliases])), several };
  }

  /** The first target's runner (the only one with the old settings). */
  get first(): CommandRunner {
    return this.all[0]!;
  }

  /** A target's name from the key its runs and buttons are stored under (`namespace/deployment`); undefined if it is no target now. */
  nameOfKey(key: string): string | undefined {
    return this.all.find((r) => r.key === key)?.name;
  }

  /** Which target(s) a command is for, or the answer when that is not one the sender may use here. */
  choose(parsed: Extract<Parsed, { kind: 'command' }>, event: RoomEvent): Chosen {
    // `help` is about every target the sender may use here, named or not.
    if (parsed.name === 'help') return { kind: 'answer', reply: this.help(event), outcome: 'answered' };
    const choice = chooseTarget(this.#o.targets, parsed.name, parsed.target, event.sender, event.room_id);
    const named = (t: Target): CommandRunner => this.#runners.get(t.name)!;
    switch (choice.kind) {
      case 'one':
        return { kind: 'one', runner: named(choice.target), command: { ...parsed, name: parsed.name } };
      case 'all':
        return { kind: 'all', runners: choice.targets.map(named) };
      case 'refused':
        return { kind: 'answer', reply: choiceReply(choice, parsed.name, this.#o.targets), outcome: 'refused', runner: named(choice.target) };
      case 'none':
        return { kind: 'answer', reply: choiceReply(choice, parsed.name, this.#o.targets), outcome: 'refused' };
      default:
        return { kind: 'answer', reply: choiceReply(choice, parsed.name, this.#o.targets), outcome: 'answered' };
    }
  }

  /** The answer to a command with an argument it cannot take, in the words of the target it names (if it names one). */
  badArgument(parsed: Extract<Parsed, { kind: 'invalid' }>): Reply {
    const target = parsed.target === undefined ? undefined : findTarget(this.#o.targets, parsed.target);
    return (target ? this.#runners.get(target.name)! : this.first).badArgument(parsed);
  }

  /** The command list, with the targets the sender may control from this room (with one target: as before). */
  help(event: RoomEvent): Reply {
    return replies.help(this.#usable(event), this.#o.commandPrefix, this.#o.reactionButtons, this.#o.targets.length > 1);
  }

  /** The first words in a room the bot was invited to: what it starts and stops for the inviter there, and the command list. */
  hello(invite: RoomEvent): Reply {
    return replies.hello(this.#usable(invite), this.help(invite));
  }

  #usable(event: RoomEvent): Array<CommandRunner['target']> {
    const usable = this.#o.targets.length === 1 ? this.#o.targets : this.#o.targets.filter((t) => allowed(t, event.sender, event.room_id));
    return usable.map((t) => this.#runners.get(t.name)!.target);
  }

  /** One line per target, read at once (each from its watch when it has one). */
  async statusAll(runners: readonly CommandRunner[]): Promise<Reply> {
    const each = await Promise.all(runners.map((r) => r.statusLine()));
    return replies.lines(`Status of ${runners.length} targets:`, each);
  }

  /** Each target's start-up checks (its Deployment, audit Events, pods): a warning each for what its Role lacks. */
  check(): Promise<void> {
    return Promise.all(this.all.map((runner) => runner.check())).then(() => undefined);
  }

  start(serialize: Serialize): Promise<void> {
    for (const runner of this.all) runner.progress.start(serialize);
    return Promise.all(this.all.map((r) => r.timers.start(serialize))).then(() => undefined);
  }

  stop(): void {
    for (const runner of this.all) {
      runner.timers.stop();
      runner.progress.stop();
    }
  }
}

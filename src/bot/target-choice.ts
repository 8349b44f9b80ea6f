/**
 * Which target a command is for (issue 13), from the name after it (`start comfy`), the sender and
 * the room: one target, all of them (a bare `status`), a question (a bare `start` when several could
 * be meant: it never guesses), an unknown name, or a refusal with its reason. Pure, with the
 * replies' texts.
 *
 * A bare command means the one target the sender may control from this room when there is just
 * one (a DM set aside for a personal agent): that is no guess, it is the only one it can be.
 */
import type { Target } from '../config/targets.ts';
import type { CommandName } from './commands.ts';
import { plain, type Reply } from './replies.ts';

export type TargetChoice =
  | { readonly kind: 'one'; readonly target: Target }
  | { readonly kind: 'all'; readonly targets: readonly Target[] }
  | { readonly kind: 'ask'; readonly targets: readonly Target[] }
  | { readonly kind: 'unknown'; readonly word: string }
  | { readonly kind: 'refused'; readonly target: Target; readonly why: 'user' | 'room' }
  /** Several targets, none of which this sender may control from this room. */
  | { readonly kind: 'none' };

/** `word`: the name given after the command, if any (lower case). */
export function chooseTarget(targets: readonly Target[], command: CommandName, word: string | undefined, sender: string, roomId: string): TargetChoice {
  if (word === undefined) {
    if (targets.length === 1) return check(targets[0]!, sender, roomId);
    const usable = targets.filter((t) => allowed(t, sender, roomId));
    if (usable.length === 0) return { kind: 'none' };
    if (command === 'status' || command === 'help') return { kind: 'all', targets: usable };
    return usable.length === 1 ? { kind: 'one', target: usable[0]! } : { kind: 'ask', targets: usable };
  }
  const target = findTarget(targets, word);
  return target ? check(target, sender, roomId) : { kind: 'unknown', word };
}

/** The target a word names (its name or one of its aliases), if any. */
export function findTarget(targets: readonly Target[], word: string): Target | undefined {
  return targets.find((t) => t.name === word || t.aliases.includes(word));
}

/** May `sender` control `t` from this room (its own allowlist and rooms; the global allowlist is checked before)? */
export function allowed(t: Target, sender: string, roomId: string): boolean {
  return check(t, sender, roomId).kind === 'one';
}

function check(target: Target, sender: string, roomId: string): TargetChoice {
  if (target.allowedUsers && !target.allowedUsers.includes(sender)) return { kind: 'refused', target, why: 'user' };
  if (target.rooms && !target.rooms.includes(roomId)) return { kind: 'refused', target, why: 'room' };
  return { kind: 'one', target };
}

/** `openclaw (agent, claw), comfy`: names and aliases, as chat takes them. */
export const targetNames = (targets: readonly Target[]): string =>
  targets.map((t) => `${t.name}${t.aliases.length ? ` (${t.aliases.join(', ')})` : ''}`).join(', ');

/** The answer to a choice that is not a target to act on; `targets`: all of them (an unknown name lists those). */
export function choiceReply(choice: Exclude<TargetChoice, { kind: 'one' } | { kind: 'all' }>, command: string, targets: readonly Target[]): Reply {
  switch (choice.kind) {
    case 'ask':
      return plain(`Which one? Say "${command} <name>"; the targets are: ${targetNames(choice.targets)}.`);
    case 'unknown':
      return plain(`There is no target "${choice.word}". The targets are: ${targetNames(targets)}.`);
    case 'refused':
      return plain(choice.why === 'user'
        ? `⛔ You may not control ${choice.target.name}: the operator allows only ${choice.target.allowedUsers!.join(', ')} for it.`
        : `⛔ ${choice.target.name} cannot be controlled from this room (the operator set the rooms that may).`);
    case 'none':
      return plain('⛔ None of the targets may be controlled by you from this room (the operator set who may, and from which rooms).');
  }
}

/** The command table and the parser: text in, a command name (or why not) out. */

export type CommandName = 'start' | 'stop' | 'status' | 'help';

export const COMMANDS: ReadonlyArray<{ readonly name: CommandName; readonly aliases: readonly string[]; readonly summary: string }> = [
  { name: 'start', aliases: ['start', 'on'], summary: 'scale the deployment to 1 replica' },
  { name: 'stop', aliases: ['stop', 'off'], summary: 'scale the deployment to 0 replicas' },
  { name: 'status', aliases: ['status'], summary: 'show desired, ready, available and updated replicas' },
  { name: 'help', aliases: ['help'], summary: 'show this list' },
];

const BY_ALIAS = new Map(COMMANDS.flatMap((c) => c.aliases.map((alias) => [alias, c.name] as const)));

export type Parsed =
  | { readonly kind: 'command'; readonly name: CommandName; readonly word: string }
  | { readonly kind: 'unknown'; readonly word: string }
  /** Not addressed to the bot (no configured prefix); stays silent. */
  | { readonly kind: 'ignore' };

/**
 * Case- and whitespace-insensitive. With a prefix configured (`!toggle`), only `!toggle <word>`
 * is addressed to the bot. Without one, a leading `!` or `/` is tolerated (`!status`), since
 * people type those out of habit.
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
  const name = BY_ALIAS.get(word);
  return name ? { kind: 'command', name, word } : { kind: 'unknown', word: rest.slice(0, 80) };
}

import { ConfigError } from './config-error.ts';

export type AuthMethod = 'password' | 'jwt';
export type JwtLoginType = 'com.famedly.login.token.oauth' | 'com.famedly.login.token' | 'org.matrix.login.jwt';

/** Password mode with `bot.authMethod: jwt`: where the bot gets its token, and how it logs in with it. */
export interface KeycloakLogin {
  /** Base URL, without a trailing slash. */
  readonly url: string;
  readonly realm: string;
  readonly clientId: string;
  /** Unset for a public client. */
  readonly clientSecret: string | undefined;
  readonly loginType: JwtLoginType;
}

interface Lookups {
  readonly mode: 'appservice' | 'password';
  readonly str: (key: string) => string | undefined;
  readonly must: (key: string, why: string) => string;
  readonly where: (key: string) => string;
}

/** The Keycloak settings when `bot.authMethod` is `jwt` (then required), else undefined (then ignored). */
export function keycloakLogin({ mode, str, must, where }: Lookups): KeycloakLogin | undefined {
  if (str('bot.authMethod') !== 'jwt') return undefined;
  // The appservice logs in with its as_token; a Keycloak token has nothing to do there.
  if (mode !== 'password') throw new ConfigError('bot.authMethod', `jwt is a password-mode login, but the mode is ${mode} (from ${where('mode')}); set BOT_MODE=password`);
  const why = 'with bot.authMethod jwt';
  const url = must('keycloak.url', why);
  const realm = must('keycloak.realm', why);
  // The realm is one path segment; a slash means a URL was pasted in by mistake.
  if (/[/\s]/.test(realm)) throw new ConfigError('keycloak.realm', `${JSON.stringify(realm)} is not a realm name (no slashes or spaces) (from ${where('keycloak.realm')})`);
  if (/\/realms\//.test(url)) throw new ConfigError('keycloak.url', `give Keycloak's base URL, without /realms/… (from ${where('keycloak.url')})`);
  return {
    url,
    realm,
    clientId: must('keycloak.clientId', why),
    clientSecret: str('keycloak.clientSecret'),
    loginType: str('bot.jwtLoginType') as JwtLoginType,
  };
}

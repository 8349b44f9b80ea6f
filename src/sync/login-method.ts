/**
 * How password mode proves who it is to the homeserver: the password itself, or a Keycloak token
 * (jwt-login.ts). The session (password-session.ts) keeps the device and the stored token; a
 * method only says what to send and how to explain a refusal.
 */
import { MatrixError } from '../matrix/client.ts';
import { EXIT, StartupError } from '../startup-error.ts';

export interface LoginMethod {
  /** For log lines: "logged in with the password". */
  readonly label: string;
  /** The `/login` body without the device fields; fresh credentials each time. */
  credentials(): Promise<Record<string, unknown>>;
  /** The `auth` of a user-interactive request (deleting a device), or undefined when it cannot give one. */
  interactiveAuth(session: string, flows: readonly string[]): Promise<Record<string, unknown> | undefined>;
  /** One line for a refused login, or the error itself when it is worth retrying. */
  refusal(error: MatrixError, offered: () => Promise<string[]>): Promise<Error>;
  /** Checked before each login; a StartupError when the homeserver cannot take this method. */
  check(offered: () => Promise<string[]>): Promise<void>;
}

/** `m.login.password` with `bot.password`: the old bot's default. */
export function passwordLogin(user: string, password: string): LoginMethod {
  const identifier = { type: 'm.id.user', user };
  return {
    label: 'the password',
    credentials: async () => ({ type: 'm.login.password', identifier, password }),
    interactiveAuth: async (session) => ({ type: 'm.login.password', identifier, password, session }),
    check: async () => undefined,
    async refusal(error, offered) {
      if (error.errcode === 'M_FORBIDDEN') return new StartupError(`login refused: wrong user or password for ${user} (bot.password / MATRIX_PASSWORD)`, EXIT.homeserver);
      const flows = await offered();
      if (flows.length > 0 && !flows.includes('m.login.password')) {
        return new StartupError(`login refused: this homeserver does not offer password login (it offers ${flows.join(', ')}); use appservice mode`, EXIT.homeserver);
      }
      return new StartupError(`login refused: ${error.errcode}: ${error.message}`, EXIT.homeserver);
    },
  };
}

/** Errors the session retries rather than explains: no answer, the server's own fault, rate limits. */
export function retryable(error: unknown): boolean {
  return !(error instanceof MatrixError) || error.status === 0 || error.status >= 500 || error.errcode === 'M_LIMIT_EXCEEDED';
}

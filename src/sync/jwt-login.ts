/**
 * Login with a Keycloak token (`bot.authMethod: jwt`), the old bot's way where password login is
 * switched off for Keycloak. Each login asks Keycloak for a fresh token: they live minutes, and
 * Synapse checks them only at login (the Matrix access token that results is Synapse's own).
 */
import type { KeycloakLogin } from '../config/config.ts';
import type { MatrixError } from '../matrix/client.ts';
import { EXIT, StartupError } from '../startup-error.ts';
import { KeycloakTokens } from './keycloak.ts';
import type { LoginMethod } from './login-method.ts';

/** What each login type needs configured on the Synapse side, for the "not offered" line. */
const SYNAPSE_SIDE: Readonly<Record<KeycloakLogin['loginType'], string>> = {
  'com.famedly.login.token.oauth': 'the synapse-token-authenticator module with an oauth: section',
  'com.famedly.login.token': 'the synapse-token-authenticator module with a jwt: section',
  'org.matrix.login.jwt': 'jwt_config (enabled: true) in homeserver.yaml',
};

export function jwtLogin(keycloak: KeycloakLogin, user: string, localpart: string, password: string): LoginMethod {
  // Keycloak knows the account by its username: the localpart. Synapse's own jwt login reads the
  // user from the token; the module's types also need it named, and check the two agree.
  const tokens = new KeycloakTokens(keycloak, { user: localpart, password });
  const type = keycloak.loginType;
  const body = async (): Promise<Record<string, unknown>> => {
    const token = await tokens.accessToken();
    return type === 'org.matrix.login.jwt' ? { type, token } : { type, identifier: { type: 'm.id.user', user }, token };
  };
  return {
    label: `a Keycloak token (${type})`,
    credentials: body,
    // Synapse accepts the module's login types in user-interactive auth, but not its own jwt type.
    interactiveAuth: async (session, flows) => (flows.includes(type) ? { ...(await body()), session } : undefined),
    async check(offered) {
      const flows = await offered();
      if (flows.length > 0 && !flows.includes(type)) throw notOffered(type, flows);
    },
    async refusal(error, offered) {
      if (error.errcode === 'M_UNKNOWN' || error.errcode === 'M_UNRECOGNIZED') {
        const flows = await offered();
        if (!flows.includes(type)) return notOffered(type, flows);
      }
      if (error.errcode === 'M_FORBIDDEN') {
        // Synapse says why for its own type ("JWT validation failed: …"); the module only says
        // "Invalid username or password" for a bad signature, an expired token and an unknown user alike.
        return new StartupError(`Synapse refused the Keycloak token for ${user} (${type}): ${said(error)}; see the README's "JWT / Keycloak" troubleshooting`, EXIT.homeserver);
      }
      return new StartupError(`Synapse refused the ${type} login for ${user}: ${error.status} ${error.errcode}: ${said(error)}`, EXIT.homeserver);
    },
  };
}

function notOffered(type: string, flows: readonly string[]): StartupError {
  return new StartupError(`Synapse does not offer the login type ${type} (it offers ${flows.join(', ') || 'nothing'}): it needs ${SYNAPSE_SIDE[type as KeycloakLogin['loginType']]}, or set bot.jwtLoginType / JWT_LOGIN_TYPE to one it offers`, EXIT.homeserver);
}

/** The homeserver's own words (its `error` field), without our request line. */
function said(error: MatrixError): string {
  const text = error.body?.['error'];
  return typeof text === 'string' ? text : error.message;
}

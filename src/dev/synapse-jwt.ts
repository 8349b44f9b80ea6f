/**
 * homeserver.yaml settings for the three JWT login types, pointed at a Keycloak (in tests, the
 * test double): what the README's "JWT / Keycloak" section tells an operator to configure.
 *
 * Development-only code: nothing in the production pipeline imports it.
 */
import type { KeycloakDouble } from './keycloak-double.ts';

export interface JwtLoginTypes {
  /** `org.matrix.login.jwt`: Synapse's own jwt_config with the realm's RS256 public key. */
  readonly native?: boolean;
  /** `com.famedly.login.token.oauth`: synapse-token-authenticator checking Keycloak's JWKS. */
  readonly oauth?: boolean;
  /** `com.famedly.login.token`: synapse-token-authenticator with this shared HS512 secret. */
  readonly hmacSecret?: string;
}

export function synapseJwtSettings(keycloak: Pick<KeycloakDouble, 'issuer' | 'jwksUrl' | 'publicKeyPem'>, types: JwtLoginTypes): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (types.native) {
    out['jwt_config'] = {
      enabled: true,
      secret: keycloak.publicKeyPem,
      algorithm: 'RS256',
      // Keycloak's `sub` is a UUID; the username is in preferred_username.
      subject_claim: 'preferred_username',
      issuer: keycloak.issuer,
      // Keycloak puts `aud: account` in access tokens, and Synapse refuses an `aud` it was not told about.
      audiences: ['account'],
    };
  }
  const module: Record<string, unknown> = {};
  if (types.oauth) {
    module['oauth'] = {
      jwt_validation: { jwks_endpoint: keycloak.jwksUrl, localpart_path: 'preferred_username', require_expiry: true },
      // The bot names itself in `identifier.user`, as a localpart or a full user id.
      username_type: 'user_id',
    };
  }
  if (types.hmacSecret !== undefined) module['jwt'] = { secret: types.hmacSecret, algorithm: 'HS512', require_expiry: true };
  if (Object.keys(module).length > 0) out['modules'] = [{ module: 'synapse_token_authenticator.TokenAuthenticator', config: module }];
  return out;
}

/** The configuration as the log and `check-config` show it: what was chosen, secrets masked. */
import { compactDuration } from '../bot/durations.ts';
import type { Config } from './config.ts';

/** The effective configuration as log fields, secrets masked (the old bot printed this at start-up). */
export function describeConfig(config: Config): Record<string, unknown> {
  return {
    mode: config.mode,
    homeserver: config.homeserver.url,
    domain: config.homeserver.domain,
    user: config.bot.localpart,
    passwordGiven: config.bot.password !== undefined,
    authMethod: config.mode === 'password' ? config.bot.authMethod : undefined,
    keycloak: config.keycloak && { url: config.keycloak.url, realm: config.keycloak.realm, clientId: config.keycloak.clientId, clientSecretGiven: config.keycloak.clientSecret !== undefined, loginType: config.keycloak.loginType },
    allowedUsers: config.bot.allowedUsers,
    echo: config.bot.echo,
    commandPrefix: config.bot.commandPrefix || undefined,
    trust: config.bot.trust,
    maxCommandAgeSeconds: config.bot.maxCommandAgeSeconds,
    reactionButtons: config.bot.reactionButtons,
    defaultRunTime: config.bot.defaultRunMs === undefined ? undefined : compactDuration(config.bot.defaultRunMs),
    maxRunTime: config.bot.maxRunMs === undefined ? undefined : compactDuration(config.bot.maxRunMs),
    timeZone: config.bot.timeZone,
    progress: config.bot.progress,
    progressDeadlineSeconds: config.bot.progressDeadlineMs === undefined ? undefined : config.bot.progressDeadlineMs / 1000,
    registration: config.appservice.registrationPath,
    appserviceId: config.appservice.registration?.id,
    listen: `${config.http.bind}:${config.http.port}`,
    // One target: as before there were targets; several: each as name=namespace/deployment.
    deployment: config.targets.length === 1 ? `${config.targets[0]!.namespace}/${config.targets[0]!.deployment}` : undefined,
    targets: config.targets.length > 1 ? config.targets.map((t) => `${t.name}=${t.namespace}/${t.deployment}`) : undefined,
    kubeconfig: config.kubernetes.kubeconfig ?? 'in-cluster or default',
    storePath: config.storage.path,
    storePassphraseGiven: config.storage.passphrase !== undefined,
    logLevel: config.log.level,
  };
}

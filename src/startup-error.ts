/** A start-up failure the operator must fix; `main` prints `message` as one line and exits with `exitCode`. */
export class StartupError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StartupError';
    this.exitCode = exitCode;
  }
}

/** Distinct exit codes per start-up phase, so a crash loop says where it stops without reading logs. */
export const EXIT = {
  config: 2,
  homeserver: 3,
  store: 4,
  listen: 5,
} as const;

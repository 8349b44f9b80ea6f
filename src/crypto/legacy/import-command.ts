/** The `import-legacy-store` operator command: arguments in, one report or one error line out. */
import { readFileSync } from 'node:fs';
import type { Config } from '../../config/config.ts';
import { InstanceLockedError } from '../../store/instance-lock.ts';
import { EXIT } from '../../startup-error.ts';
import { importNioStore, type ImportReport } from './import-nio.ts';
import { LegacyStoreError, NIO_DEFAULT_PICKLE_KEY } from './nio-store.ts';

export interface ImportAction {
  readonly from: string;
  readonly pickleKeyFile: string | undefined;
  readonly force: boolean;
}

/** Runs the import; prints the report (stdout) or one line saying what is wrong (stderr). Returns the exit code. */
export async function runImportLegacyStore(action: ImportAction, config: Config, out = console.log, err = console.error): Promise<number> {
  try {
    const pickleKey = action.pickleKeyFile === undefined ? NIO_DEFAULT_PICKLE_KEY : readPickleKey(action.pickleKeyFile);
    const report = await importNioStore({ from: action.from, storagePath: config.storage.path, passphrase: config.storage.passphrase, pickleKey, force: action.force });
    out(describeImport(report));
    return 0;
  } catch (error) {
    if (error instanceof LegacyStoreError || error instanceof InstanceLockedError) {
      err(`import-legacy-store: ${error.message}`);
      return EXIT.store;
    }
    throw error;
  }
}

function readPickleKey(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new LegacyStoreError(`cannot read --pickle-key-file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  // A file written by `echo` ends with a newline that is not part of the key.
  const key = text.replace(/\r?\n$/, '');
  if (key === '') throw new LegacyStoreError(`--pickle-key-file ${file} is empty`);
  return key;
}

export function describeImport(r: ImportReport): string {
  return [
    `Imported the matrix-nio store ${r.file}:`,
    `  user ${r.userId}, device ${r.deviceId} (ed25519 ${r.ed25519}, curve25519 ${r.curve25519})`,
    `  ${r.olmSessions} Olm session${r.olmSessions === 1 ? '' : 's'}, ${r.megolmSessions} inbound Megolm session${r.megolmSessions === 1 ? '' : 's'}`,
    ...(r.movedAside ? [`  the previous crypto store was moved to ${r.movedAside}`] : []),
    ...(r.crossSigning ? [`  the bot's cross-signing identity: ${r.crossSigning}`] : []),
    ...(r.forgotLogin ? [`  forgot the stored login of ${r.forgotLogin}: the bot logs in again as ${r.deviceId}`] : []),
    'The old store was not modified. Start the bot as this user (and stop the old bot for good): it keeps this device.',
  ].join('\n');
}

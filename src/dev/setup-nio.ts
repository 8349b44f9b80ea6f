/** `node src/dev/setup-nio.ts`: installs the old bot's matrix-nio (libolm) into the tests' cached venv (once). */
import { ensureNioVenv, NIO_VERSION, PYTHON_OLM_VERSION } from './nio-venv.ts';

const python = await ensureNioVenv();
process.stdout.write(`matrix-nio ${NIO_VERSION} with python-olm ${PYTHON_OLM_VERSION} ready: ${python}\n`);

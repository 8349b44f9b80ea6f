/** `npm run setup:synapse`: installs the pinned Synapse into the harness's cached venv (once). */
import { ensureSynapseVenv, SYNAPSE_VERSION } from './synapse.ts';

const python = await ensureSynapseVenv();
process.stdout.write(`Synapse ${SYNAPSE_VERSION} ready: ${python}\n`);

/**
 * The production build (`npm run build`): one minified ESM file, `dist/main.js`, plus the crypto
 * engine's WebAssembly beside it (`dist/pkg/…_bg.wasm`, where the engine's loader looks for it,
 * relative to the importing module's URL). Nothing else is needed at run time: no node_modules.
 *
 * Why a bundle: loading ~600 small files of dependencies from node_modules costs start-up time and
 * memory (each module keeps its source and compiled code); one minified file measured tens of MiB
 * less resident and a faster start (README, "Memory"). Why esbuild: a single static binary that
 * npm installs from the registry as a platform package (no install script needed), bundles
 * TypeScript directly, and finishes in well under a second; the bot needs no plugin of any kind.
 *
 * Source runs (`npm start`, the tests) keep running the TypeScript through Node's type stripping.
 */
import { copyFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type BuildOptions } from 'esbuild';

const REPO = fileURLToPath(new URL('../', import.meta.url));

/** Where the engine's loader (node.mjs) reads the wasm from: `new URL('./pkg/…_bg.wasm', import.meta.url)`. */
const WASM_NAME = 'matrix_sdk_crypto_wasm_bg.wasm';

export const BUILD_OPTIONS: BuildOptions = {
  entryPoints: [join(REPO, 'src/main.ts')],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  minify: true,
  // Error messages and stack traces keep the classes' and functions' own names.
  keepNames: true,
  // The bundled packages' licences go to THIRD-PARTY-LICENSES.txt whole (below), not as comment fragments.
  legalComments: 'none',
  // Several dependencies are CommonJS and require Node's built-ins; in an ES module `require` must be made.
  banner: { js: "import { createRequire as __openclawRequire } from 'node:module'; const require = __openclawRequire(import.meta.url);" },
  // `import.meta.main` marks a module run as a script (settings-table.ts prints the README table);
  // inside the bundle it would be true for every module, so it is false there.
  define: { 'import.meta.main': 'false' },
  logLevel: 'warning',
};

export async function buildBundle(outDir = join(REPO, 'dist')): Promise<{ bundleBytes: number; wasmBytes: number }> {
  await rm(outDir, { recursive: true, force: true });
  const result = await build({ ...BUILD_OPTIONS, outfile: join(outDir, 'main.js'), metafile: true });
  const engineDir = dirname(createRequire(import.meta.url).resolve('@matrix-org/matrix-sdk-crypto-wasm'));
  await mkdir(join(outDir, 'pkg'), { recursive: true });
  await copyFile(join(engineDir, 'pkg', WASM_NAME), join(outDir, 'pkg', WASM_NAME));
  await writeFile(join(outDir, 'package.json'), JSON.stringify({ type: 'module' }) + '\n');
  await writeFile(join(outDir, 'THIRD-PARTY-LICENSES.txt'), await licences(Object.keys(result.metafile?.inputs ?? {})));
  const outputs = result.metafile?.outputs ?? {};
  const bundleBytes = Object.entries(outputs).find(([name]) => name.endsWith('main.js'))?.[1].bytes ?? 0;
  const { size: wasmBytes } = await stat(join(outDir, 'pkg', WASM_NAME));
  return { bundleBytes, wasmBytes };
}

/** The licence of every package with code in the bundle (their MIT/ISC/Apache terms ask that it travels with the code). */
async function licences(inputs: readonly string[]): Promise<string> {
  const dirs = new Set<string>();
  for (const input of inputs) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m?.[1]) dirs.add(join(REPO, m[1]));
  }
  const parts: string[] = [];
  for (const dir of [...dirs].sort()) {
    const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as { name: string; version: string; license?: string };
    const file = (await readdir(dir)).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f));
    const text = file ? (await readFile(join(dir, file), 'utf8')).trim() : `(no licence file in the package; package.json says ${pkg.license ?? 'nothing'})`;
    parts.push(`${pkg.name} ${pkg.version} (${pkg.license ?? '?'})\n\n${text}\n`);
  }
  return `Third-party software bundled into main.js and pkg/ (${parts.length} packages)\n\n${parts.join('\n' + '-'.repeat(72) + '\n\n')}`;
}

if (import.meta.main) {
  const out = process.argv[2] ?? join(REPO, 'dist');
  const { bundleBytes, wasmBytes } = await buildBundle(out);
  const kib = (n: number): string => `${Math.round(n / 1024)} KiB`;
  console.log(`built ${relative(process.cwd(), join(out, 'main.js')) || 'main.js'} (${kib(bundleBytes)}) and pkg/${WASM_NAME} (${kib(wasmBytes)})`);
}

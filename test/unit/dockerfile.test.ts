/**
 * THE DOCKERFILE'S STEPS, EXECUTED WITHOUT DOCKER.
 *
 * There is no Docker engine on the development and CI machines, so this test does what `docker build` and
 * `docker run` would do, from the Dockerfile itself, in scratch directories:
 *
 *  1. parses the Dockerfile (ARG, FROM … AS, WORKDIR, COPY [--from] [--chown], RUN, ENV, LABEL, USER,
 *     VOLUME, EXPOSE, STOPSIGNAL, ENTRYPOINT, CMD); any other instruction fails the test, so the replay
 *     never silently diverges from what Docker would do;
 *  2. builds the build context from the working tree through .dockerignore (Docker's matching rules);
 *  3. gives every stage its own root directory ("rootfs") and replays its instructions there: WORKDIR
 *     creates rootfs/<dir>, COPY copies from the context or (--from) from another stage's rootfs, RUN runs
 *     `sh -c` in rootfs/<WORKDIR> with the stage's ENV, HOME=rootfs/root and a fresh npm cache, the
 *     absolute image paths in the command (/build, /app, /data: the first components of WORKDIR, VOLUME and
 *     COPY paths) mapped into rootfs; a RUN naming any other absolute path is refused rather than run on
 *     this machine. `apt-get` lines would be skipped (there are none). The base image's Node 24 is stood
 *     in for by the repo's `node_modules/.bin/node` (the pinned `node` devDependency), npm by the system's;
 *  4. runs the runtime stage's ENTRYPOINT in rootfs/<WORKDIR> with the image's ENV, as the image's USER
 *     when this test runs as root: --version, generate-registration, check-config (valid and invalid),
 *     and the bot itself until /health answers, then SIGTERM.
 *
 * Nothing is cached between runs: `npm ci` downloads from the registry each time (about 20 s).
 * What it cannot check: the base image itself (node:24-slim's contents), image metadata as Docker stores
 * it, and multi-platform builds (there is nothing platform-specific to check: no native modules).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync, chownSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync,
  readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { SETTINGS } from '../../src/config/settings.ts';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string; version: string; license: string; dependencies: Record<string, string>; devDependencies: Record<string, string>;
};
const DEFAULT_PORT = SETTINGS.find((s) => s.key === 'http.port')?.default;
const IS_ROOT = process.getuid?.() === 0;

// ---------------------------------------------------------------------------------------------------------
// Dockerfile parsing

interface Instruction {
  readonly keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  readonly rest: string;
  readonly line: number;
}

interface Stage {
  readonly name: string;
  readonly base: string;
  /** FROM --platform (only $BUILDPLATFORM is replayed). */
  readonly platform?: string | undefined;
  readonly instructions: Instruction[];
}

interface Dockerfile {
  readonly globalArgs: Map<string, string>;
  readonly stages: Stage[];
  readonly all: Instruction[];
}

const SUPPORTED = new Set(['ARG', 'FROM', 'WORKDIR', 'COPY', 'RUN', 'ENV', 'LABEL', 'USER', 'VOLUME', 'EXPOSE', 'STOPSIGNAL', 'ENTRYPOINT', 'CMD']);

/** Logical lines: comments and blank lines dropped (also inside continuations, as Docker does), `\` joins. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line) || (pending === '' && line.trim() === '')) return;
    if (pending === '') start = index + 1;
    const trimmed = line.replace(/\s+$/, '');
    if (trimmed.endsWith('\\')) {
      pending += trimmed.slice(0, -1);
      return;
    }
    pending += line;
    const match = /^\s*(\S+)\s*([\s\S]*)$/.exec(pending);
    pending = '';
    if (!match) return;
    out.push({ keyword: (match[1] as string).toUpperCase(), rest: (match[2] as string).trim(), line: start });
  });
  assert.equal(pending, '', 'the Dockerfile ends inside a continuation line');
  return out;
}

/** `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}` as Docker expands them in instructions. */
function expand(text: string, vars: ReadonlyMap<string, string>): string {
  return text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_all, braced: string | undefined, op: string | undefined, word: string | undefined, bare: string | undefined) => {
      const value = vars.get((braced ?? bare) as string);
      if (op === '-') return value ? value : (word ?? '');
      if (op === '+') return value ? (word ?? '') : '';
      return value ?? '';
    });
}

/** Shell-like words: quotes group and are removed, backslash escapes outside single quotes. */
function words(text: string): string[] {
  const out: string[] = [];
  let word: string | undefined;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === '\\' && quote === '"' && i + 1 < text.length) word = (word ?? '') + text[++i];
      else word = (word ?? '') + c;
    } else if (c === '"' || c === "'") {
      quote = c;
      word = word ?? '';
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else if (/\s/.test(c)) {
      if (word !== undefined) out.push(word);
      word = undefined;
    } else {
      word = (word ?? '') + c;
    }
  }
  assert.equal(quote, undefined, `unterminated quote in: ${text}`);
  if (word !== undefined) out.push(word);
  return out;
}

/** `KEY=VALUE …` (or the legacy `KEY VALUE`) of ENV, LABEL and ARG. */
function pairs(text: string): [string, string][] {
  const list = words(text);
  if (list.length >= 1 && !(list[0] as string).includes('=')) {
    const [key, ...value] = list;
    return [[key as string, value.join(' ')]];
  }
  return list.map((w) => {
    const at = w.indexOf('=');
    assert.ok(at > 0, `expected KEY=VALUE, got "${w}"`);
    return [w.slice(0, at), w.slice(at + 1)];
  });
}

/** The exec (JSON) form of ENTRYPOINT / CMD / VOLUME, else undefined. */
function execForm(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(rest);
  assert.ok(Array.isArray(parsed) && parsed.every((x) => typeof x === 'string'), `not a JSON string array: ${rest}`);
  return parsed as string[];
}

/** Leading `--name=value` flags of COPY and FROM. */
function flags(rest: string): { flags: Map<string, string>; args: string } {
  const map = new Map<string, string>();
  let args = rest;
  for (let m = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(args); m; m = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(args)) {
    map.set(m[1] as string, m[2] ?? 'true');
    args = args.slice(m[0].length);
  }
  return { flags: map, args };
}

function parseDockerfile(text: string): Dockerfile {
  const all = instructions(text);
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of all) {
    assert.ok(SUPPORTED.has(ins.keyword), `Dockerfile line ${ins.line}: ${ins.keyword} is not replayed by this test (extend it, or do without)`);
    if (ins.keyword === 'FROM') {
      // --platform only picks which variant of the base image Docker pulls: the replay has one platform.
      const { flags: from, args } = flags(ins.rest);
      for (const [flag, value] of from) assert.ok(flag === 'platform' && /^\$(BUILDPLATFORM|TARGETPLATFORM)$|^\$\{(BUILD|TARGET)PLATFORM\}$/.test(value), `line ${ins.line}: FROM --${flag}=${value} is not replayed`);
      const [image, as, name, ...extra] = words(expand(args, globalArgs));
      assert.ok(image && extra.length === 0 && (as === undefined || (as.toUpperCase() === 'AS' && name)), `line ${ins.line}: FROM [--platform=$BUILDPLATFORM] image [AS name]`);
      stages.push({ name: name ?? String(stages.length), base: image, platform: from.get('platform'), instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(ins.keyword, 'ARG', `line ${ins.line}: only ARG may come before the first FROM`);
      for (const [key, value] of pairs(ins.rest)) globalArgs.set(key, value);
    } else {
      (stages.at(-1) as Stage).instructions.push(ins);
    }
  }
  return { globalArgs, stages, all };
}

// ---------------------------------------------------------------------------------------------------------
// .dockerignore: Docker's rules (github.com/moby/patternmatcher): patterns are cleaned paths relative to the
// context, `*` and `?` stay within one path component, `**` spans any number; a pattern matching a
// directory excludes everything in it; `!` re-includes; the last matching pattern wins.

interface IgnoreRule {
  readonly negate: boolean;
  readonly pattern: string;
  readonly regex: RegExp;
}

function globToRegex(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i] as string;
    if (c === '*' && pattern[i + 1] === '*') {
      i++;
      if (pattern[i + 1] === '/') {
        i++;
        out += '(?:.*/)?';
      } else {
        out += '.*';
      }
    } else if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) out += `\\${pattern[++i]}`;
    else if (c === '[') {
      const end = pattern.indexOf(']', i);
      out += end > i ? pattern.slice(i, end + 1).replace('[!', '[^') : '\\[';
      if (end > i) i = end;
    } else out += c.replace(/[.+^${}()|\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

function readIgnore(path: string): IgnoreRule[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).map((l) => {
    const negate = l.startsWith('!');
    const pattern = posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^(\.\/|\/)+/, '').replace(/\/+$/, '');
    return { negate, pattern, regex: globToRegex(pattern) };
  });
}

function ignored(rules: readonly IgnoreRule[], path: string): boolean {
  const parents = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let excluded = false;
  for (const rule of rules) {
    if (parents.some((p) => rule.regex.test(p))) excluded = !rule.negate;
  }
  return excluded;
}

/** Whether some `!` rule could re-include a path below the excluded directory `dir`. */
function mayReinclude(rules: readonly IgnoreRule[], dir: string): boolean {
  const segments = dir.split('/');
  return rules.some((rule) => {
    if (!rule.negate) return false;
    const parts = rule.pattern.split('/');
    for (let i = 0; i < Math.min(parts.length, segments.length); i++) {
      if (parts[i] === '**') return true;
      if (!globToRegex(parts[i] as string).test(segments[i] as string)) return false;
    }
    return parts.length > segments.length;
  });
}

/** Copies the build context (the repo through .dockerignore) to `dest`; returns its relative file paths. */
function buildContext(repo: string, dest: string): string[] {
  const rules = readIgnore(join(repo, '.dockerignore'));
  const files: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of readdirSync(join(repo, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      const excluded = ignored(rules, path);
      if (entry.isDirectory()) {
        if (!excluded || mayReinclude(rules, path)) walk(path);
        continue;
      }
      if (excluded) continue;
      mkdirSync(join(dest, dirname(path)), { recursive: true });
      if (entry.isSymbolicLink()) symlinkSync(readlinkSync(join(repo, path)), join(dest, path));
      else copyFileSync(join(repo, path), join(dest, path));
      files.push(path);
    }
  };
  walk('');
  return files.sort();
}

// ---------------------------------------------------------------------------------------------------------
// The replay

interface StageResult {
  readonly stage: Stage;
  readonly rootfs: string;
  workdir: string;
  readonly env: Map<string, string>;
  readonly args: Map<string, string>;
  readonly labels: Map<string, string>;
  readonly volumes: string[];
  readonly expose: string[];
  user: string | undefined;
  stopSignal: string | undefined;
  entrypoint: string[] | undefined;
  cmd: string[] | undefined;
  readonly runs: { readonly command: string; readonly ms: number; readonly skipped?: boolean }[];
  /** What COPY --chown / chown would have done when this test does not run as root. */
  readonly chowns: string[];
}

/** Environment variables a build may need to reach the npm registry from this machine (nothing else leaks in). */
const PASS_THROUGH = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy',
  'https_proxy', 'no_proxy', 'npm_config_registry', 'npm_config_cafile', 'npm_config_proxy', 'npm_config_https_proxy', 'npm_config_strict_ssl', 'LANG', 'TZ'];

class Replay {
  readonly stages = new Map<string, StageResult>();
  /** First components of the image's own absolute paths: RUN lines may name these (mapped into the rootfs). */
  readonly imageDirs: Set<string>;

  readonly dockerfile: Dockerfile;
  readonly scratch: string;
  readonly context: string;
  /** Stands in for the base image's /usr/local/bin: holds `node`. */
  readonly baseBin: string;
  readonly log: (line: string) => void;

  constructor(dockerfile: Dockerfile, scratch: string, context: string, baseBin: string, log: (line: string) => void) {
    this.dockerfile = dockerfile;
    this.scratch = scratch;
    this.context = context;
    this.baseBin = baseBin;
    this.log = log;
    const dirs = new Set<string>();
    const add = (p: string | undefined): void => {
      if (p?.startsWith('/')) dirs.add(p.split('/')[1] as string);
    };
    for (const stage of dockerfile.stages) {
      for (const ins of stage.instructions) {
        if (ins.keyword === 'WORKDIR') add(ins.rest);
        if (ins.keyword === 'VOLUME') (execForm(ins.rest) ?? words(ins.rest)).forEach(add);
        if (ins.keyword === 'COPY') {
          const { flags: f, args } = flags(ins.rest);
          const paths = execForm(args) ?? words(args);
          add(paths.at(-1));
          if (f.has('from')) paths.slice(0, -1).forEach(add);
        }
      }
    }
    dirs.delete('');
    this.imageDirs = dirs;
  }

  run(): void {
    for (const stage of this.dockerfile.stages) this.runStage(stage);
  }

  private hostPath(state: StageResult, containerPath: string): string {
    return join(state.rootfs, posix.resolve(state.workdir, containerPath));
  }

  /** Maps the image's absolute paths inside a value or a command line into the stage's rootfs. */
  private mapPaths(state: StageResult, text: string, strict: boolean): string {
    return text.replace(/(^|[\s=:"'(>])(\/[A-Za-z0-9._\-/]*)/g, (all, lead: string, path: string) => {
      const first = path.split('/')[1] ?? '';
      if (this.imageDirs.has(first)) return lead + join(state.rootfs, path);
      if (!strict || path === '/dev/null') return all;
      throw new Error(`RUN names ${path}, outside the image's own directories (${[...this.imageDirs].join(', ')}): the replay will not touch this machine's ${path}`);
    });
  }

  private runEnv(state: StageResult): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const name of PASS_THROUGH) if (process.env[name] !== undefined) env[name] = process.env[name];
    for (const [k, v] of state.args) env[k] = v;
    for (const [k, v] of state.env) env[k] = this.mapPaths(state, v, false);
    const home = join(state.rootfs, 'root');
    mkdirSync(home, { recursive: true });
    env['HOME'] = home;
    // A fresh cache inside the stage (as in a container): `npm cache clean` never touches this machine's.
    env['npm_config_cache'] = join(home, '.npm');
    env['npm_config_update_notifier'] = 'false';
    // This machine's PATH for npm and sh, less anything npm put there for this repo (node_modules/.bin).
    const hostPath = (process.env['PATH'] ?? '/usr/bin:/bin').split(delimiter).filter((p) => p !== '' && !p.includes('node_modules'));
    env['PATH'] = [this.baseBin, join(this.scratch, 'shims'), ...hostPath].join(delimiter);
    return env;
  }

  private runStage(stage: Stage): void {
    const rootfs = join(this.scratch, `stage-${stage.name}`);
    mkdirSync(rootfs, { recursive: true });
    const state: StageResult = {
      stage, rootfs, workdir: '/', env: new Map(), args: new Map(), labels: new Map(), volumes: [], expose: [], user: undefined,
      stopSignal: undefined, entrypoint: undefined, cmd: undefined, runs: [], chowns: [],
    };
    this.stages.set(stage.name, state);
    const vars = (): Map<string, string> => new Map([...state.args, ...state.env]);
    for (const ins of stage.instructions) {
      const where = `Dockerfile line ${ins.line} (${stage.name})`;
      switch (ins.keyword) {
        case 'ARG':
          for (const [key, value] of pairs(ins.rest)) state.args.set(key, value || (this.dockerfile.globalArgs.get(key) ?? ''));
          break;
        case 'ENV':
          for (const [key, value] of pairs(expand(ins.rest, vars()))) {
            assert.notEqual(key, 'PATH', `${where}: ENV PATH is not replayed`);
            state.env.set(key, value);
          }
          break;
        case 'LABEL':
          for (const [key, value] of pairs(expand(ins.rest, vars()))) state.labels.set(key, value);
          break;
        case 'WORKDIR':
          state.workdir = posix.resolve(state.workdir, expand(ins.rest, vars()));
          mkdirSync(this.hostPath(state, '.'), { recursive: true });
          break;
        case 'USER':
          state.user = expand(ins.rest, vars());
          break;
        case 'VOLUME':
          for (const v of execForm(ins.rest) ?? words(expand(ins.rest, vars()))) {
            state.volumes.push(v);
            mkdirSync(this.hostPath(state, v), { recursive: true });
          }
          break;
        case 'EXPOSE':
          state.expose.push(...words(expand(ins.rest, vars())));
          break;
        case 'STOPSIGNAL':
          state.stopSignal = expand(ins.rest, vars());
          break;
        case 'ENTRYPOINT':
          state.entrypoint = execForm(ins.rest) ?? ['/bin/sh', '-c', ins.rest];
          break;
        case 'CMD':
          state.cmd = execForm(ins.rest) ?? ['/bin/sh', '-c', ins.rest];
          break;
        case 'COPY':
          this.copy(state, ins, vars());
          break;
        case 'RUN':
          this.runCommand(state, ins);
          break;
        default:
          assert.fail(`${where}: ${ins.keyword} cannot appear here`);
      }
    }
  }

  private copy(state: StageResult, ins: Instruction, vars: ReadonlyMap<string, string>): void {
    const { flags: f, args } = flags(expand(ins.rest, vars));
    for (const name of f.keys()) assert.ok(['from', 'chown', 'link'].includes(name), `Dockerfile line ${ins.line}: COPY --${name} is not replayed`);
    const paths = execForm(args) ?? words(args);
    assert.ok(paths.length >= 2, `Dockerfile line ${ins.line}: COPY needs a source and a destination`);
    const dest = paths.at(-1) as string;
    const sources = paths.slice(0, -1);
    const from = f.get('from');
    // Sources: relative to the context root, or (--from) absolute or relative to another stage's root.
    let sourceRoot = this.context;
    if (from !== undefined) {
      const other = this.stages.get(from);
      assert.ok(other, `Dockerfile line ${ins.line}: COPY --from=${from}: no earlier stage of that name`);
      sourceRoot = other.rootfs;
    }
    const destHost = this.hostPath(state, dest);
    const destIsDir = dest.endsWith('/') || sources.length > 1 || (existsSync(destHost) && statSync(destHost).isDirectory());
    for (const source of sources) {
      assert.ok(!/[*?[]/.test(source), `Dockerfile line ${ins.line}: wildcards in COPY are not replayed`);
      const sourceHost = join(sourceRoot, posix.resolve('/', source));
      assert.ok(existsSync(sourceHost), `Dockerfile line ${ins.line}: COPY ${source}: not in the ${from ? `stage ${from}` : 'build context (see .dockerignore)'}`);
      let target: string;
      if (lstatSync(sourceHost).isDirectory()) {
        target = destHost;
        cpSync(sourceHost, target, { recursive: true, verbatimSymlinks: true });
      } else {
        target = destIsDir ? join(destHost, basename(sourceHost)) : destHost;
        mkdirSync(dirname(target), { recursive: true });
        cpSync(sourceHost, target, { verbatimSymlinks: true });
      }
      const chown = f.get('chown');
      if (chown !== undefined) this.chown(state, chown, target, true);
    }
  }

  private chown(state: StageResult, owner: string, path: string, recursive: boolean): void {
    const m = /^(\d+)(?::(\d+))?$/.exec(owner);
    assert.ok(m, `--chown=${owner}: only numeric ids are replayed`);
    if (!IS_ROOT) {
      state.chowns.push(`${owner} ${path}`);
      return;
    }
    const uid = Number(m[1]);
    const gid = Number(m[2] ?? m[1]);
    const visit = (p: string): void => {
      chownSync(p, uid, gid);
      if (recursive && lstatSync(p).isDirectory()) for (const e of readdirSync(p)) visit(join(p, e));
    };
    visit(path);
  }

  private runCommand(state: StageResult, ins: Instruction): void {
    const exec = execForm(ins.rest);
    const command = exec ? exec.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ') : ins.rest;
    if (/\bapt-get\b/.test(command)) {
      this.log(`skipped (apt-get): ${command}`);
      state.runs.push({ command, ms: 0, skipped: true });
      return;
    }
    const mapped = this.mapPaths(state, command, true);
    const env = this.runEnv(state);
    if (!IS_ROOT) env['CHOWN_LOG'] = join(this.scratch, 'chown.log');
    const started = Date.now();
    const result = spawnSync('sh', ['-c', mapped], { cwd: this.hostPath(state, '.'), env, encoding: 'utf8', maxBuffer: 64 << 20, timeout: 240_000 });
    const ms = Date.now() - started;
    state.runs.push({ command, ms });
    this.log(`RUN (${state.stage.name}, ${ms} ms): ${command.replace(/\s+/g, ' ')}`);
    if (result.status !== 0) {
      const output = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
      assert.fail(`Dockerfile line ${ins.line} (${state.stage.name}): RUN failed (${result.error?.message ?? `exit ${result.status}`}):\n${command}\n${output}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Helpers to run the image

function which(name: string, path: string): string {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`${name} not found on PATH ${path}`);
}

interface Ran { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stdout: string; readonly stderr: string }

async function freePort(): Promise<number> {
  return await new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => res(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------

describe('Dockerfile (its steps executed without Docker)', { timeout: 300_000 }, () => {
  let scratch: string;
  let dockerfile: Dockerfile;
  let replay: Replay;
  let contextFiles: string[];
  let build: StageResult;
  let runtime: StageResult;
  let uid: number | undefined;
  let gid: number | undefined;
  /** The container's environment for the ENTRYPOINT (the image's ENV, paths mapped, plus PATH and HOME). */
  let imageEnv: NodeJS.ProcessEnv;
  const timings: string[] = [];

  /** `docker run IMAGE args…` (with -e extra), as the image's user when this test runs as root. */
  const runImage = (args: readonly string[], extra: Record<string, string> = {}, timeoutMs = 30_000): Promise<Ran> => {
    const entry = runtime.entrypoint as string[];
    const env = { ...imageEnv, ...extra };
    const argv = [...entry.slice(1), ...args];
    const executable = (entry[0] as string).includes('/') ? entry[0] as string : which(entry[0] as string, env['PATH'] as string);
    return new Promise((res, rej) => {
      const child = spawn(executable, argv, {
        cwd: join(runtime.rootfs, runtime.workdir), env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs,
        ...(uid !== undefined ? { uid, gid } : {}),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      child.once('error', rej);
      child.once('close', (code, signal) => res({ code, signal, stdout, stderr }));
    });
  };

  before(() => {
    const started = Date.now();
    scratch = mkdtempSync(join(tmpdir(), 'openclaw-dockerfile-test-'));
    chmodSync(scratch, 0o755); // the image's user must reach the runtime rootfs
    dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));

    // The base image's node: the pinned Node 24 devDependency. Copied when running as root, so that the
    // image's user can execute it wherever this checkout lives (as /usr/local/bin/node in the image).
    const baseBin = join(scratch, 'base-image-bin');
    mkdirSync(baseBin);
    mkdirSync(join(scratch, 'shims'));
    const node = realpathSync(join(ROOT, 'node_modules', '.bin', 'node'));
    if (IS_ROOT) {
      copyFileSync(node, join(baseBin, 'node'));
      chmodSync(join(baseBin, 'node'), 0o755);
    } else {
      symlinkSync(node, join(baseBin, 'node'));
    }
    // Not root: chown cannot change owners; record what it was asked instead.
    if (!IS_ROOT) writeFileSync(join(scratch, 'shims', 'chown'), '#!/bin/sh\necho "$@" >> "$CHOWN_LOG"\n', { mode: 0o755 });

    const context = join(scratch, 'context');
    mkdirSync(context);
    contextFiles = buildContext(ROOT, context);
    timings.push(`context ${contextFiles.length} files: ${Date.now() - started} ms`);

    replay = new Replay(dockerfile, scratch, context, baseBin, (line) => timings.push(line));
    replay.run();
    build = replay.stages.get('build') as StageResult;
    runtime = [...replay.stages.values()].at(-1) as StageResult;
    assert.ok(build, 'a stage named "build"');

    const user = /^(\d+)(?::(\d+))?$/.exec(runtime.user ?? '');
    if (IS_ROOT && user) {
      uid = Number(user[1]);
      gid = Number(user[2] ?? user[1]);
    }
    imageEnv = {};
    for (const [k, v] of runtime.env) imageEnv[k] = v.startsWith('/') && replay.imageDirs.has(v.split('/')[1] as string) ? join(runtime.rootfs, v) : v;
    imageEnv['PATH'] = [baseBin, '/usr/local/bin', '/usr/bin', '/bin'].join(delimiter);
    imageEnv['HOME'] = runtime.rootfs;
    timings.push(`replay total: ${Date.now() - started} ms`);
  });

  after(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test('the replay (timings)', (t: TestContext) => {
    for (const line of timings) t.diagnostic(line);
    assert.ok(runtime.runs.length > 0 && build.runs.length > 0);
  });

  test('two stages on Node 24 slim images: build, then the runtime image', () => {
    assert.deepEqual(dockerfile.stages.map((s) => s.name), ['build', 'runtime']);
    for (const stage of dockerfile.stages) assert.match(stage.base, /^node:24(\.\d+)*-(bookworm-|trixie-)?slim(@sha256:[0-9a-f]{64})?$/, stage.name);
  });

  test('the build context holds only what the image needs: no node_modules, dist, .git, dev harness or secrets', () => {
    assert.ok(contextFiles.includes('package-lock.json') && contextFiles.includes('src/main.ts'));
    for (const file of contextFiles) {
      assert.doesNotMatch(file, /^(node_modules|dist|\.git|\.cache|data|test|config)\//, file);
      assert.doesNotMatch(file, /^src\/dev\//, file);
      assert.doesNotMatch(file, /registration[^/]*\.(ya?ml|json)$/i, `${file}: a registration holds the appservice tokens`);
    }
    // Paths that may exist on a developer's machine, and must never be sent to a builder:
    const rules = readIgnore(join(ROOT, '.dockerignore'));
    for (const path of ['config/kubernetes/registration.yaml', 'registration.yaml', 'data/state.sqlite', '.git/config', 'node_modules/yaml/package.json', '.cache/synapse/bin/python', 'dist/main.js', 'src/dev/demo.ts', '.env']) {
      assert.ok(ignored(rules, path), `.dockerignore must exclude ${path}`);
    }
    assert.ok(!ignored(rules, 'src/main.ts') && !ignored(rules, 'package-lock.json'));
  });

  test('build stage: on the builder\'s platform, npm ci without install scripts, then npm run build: one bundle and the engine\'s wasm', () => {
    assert.equal(dockerfile.stages[0]?.platform, '$BUILDPLATFORM', 'the bundle is platform-independent: build it natively');
    const commands = build.runs.map((r) => r.command);
    assert.ok(commands.some((c) => /\bnpm ci\b/.test(c) && /--ignore-scripts/.test(c) && !/--omit=dev/.test(c)), 'the build stage installs dev dependencies (the bundler), without install scripts');
    assert.ok(commands.some((c) => /\bnpm run build\b/.test(c)));
    const dist = join(build.rootfs, build.workdir, 'dist');
    assert.deepEqual(readdirSync(dist).sort(), ['THIRD-PARTY-LICENSES.txt', 'main.js', 'package.json', 'pkg']);
    assert.deepEqual(readdirSync(join(dist, 'pkg')), ['matrix_sdk_crypto_wasm_bg.wasm']);
    const bundle = readFileSync(join(dist, 'main.js'), 'utf8');
    assert.ok(bundle.length / bundle.split('\n').length > 1000, 'minified (long lines; newlines left are inside template strings)');
    assert.doesNotMatch(bundle, /startKubeSimulator|startSynapse|startStack/, 'the development harness is not bundled');
    // Every package with code in the bundle has its licence beside it.
    const licences = readFileSync(join(dist, 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    for (const name of Object.keys(PACKAGE.dependencies)) assert.ok(licences.includes(`\n${name} `), `${name}'s licence`);
  });

  test('runtime stage: the bundle and the licences only: no node_modules, no sources, no npm install, no package files', () => {
    const app = join(runtime.rootfs, runtime.workdir);
    assert.equal(runtime.workdir, '/app');
    assert.ok(!runtime.runs.some((r) => /\bnpm\b|\btsc\b|apt-get|\bapk\b/.test(r.command)), 'no npm, build steps or packages in the runtime stage');
    assert.deepEqual(readdirSync(app).sort(), ['LICENSE.md', 'dist']);
    assert.ok(existsSync(join(app, 'dist', 'main.js')) && existsSync(join(app, 'dist', 'pkg', 'matrix_sdk_crypto_wasm_bg.wasm')));
    assert.ok(existsSync(join(app, 'LICENSE.md')), 'LGPL: the licence travels with the image');
    assert.ok(existsSync(join(app, 'dist', 'THIRD-PARTY-LICENSES.txt')), 'the bundled packages\' licences travel with the image');
    assert.ok(!existsSync(join(runtime.rootfs, 'root', '.npm')), 'no npm cache');
  });

  test('runtime metadata: numeric non-root USER, /data volume owned by it, EXPOSE = http.port, SIGTERM, no HEALTHCHECK, labels', () => {
    assert.match(runtime.user ?? '', /^\d+:\d+$/, 'USER uid:gid, numeric (runAsNonRoot can only verify a numeric user)');
    const [u, g] = (runtime.user as string).split(':').map(Number);
    assert.ok((u as number) > 0 && (g as number) > 0, 'not root');
    assert.equal(runtime.env.get('CRYPTO_STORE_PATH'), '/data');
    assert.deepEqual(runtime.volumes, ['/data']);
    if (IS_ROOT) {
      const st = statSync(join(runtime.rootfs, 'data'));
      assert.equal(st.uid, u);
      assert.equal(st.gid, g);
      assert.equal(st.mode & 0o777, 0o700);
      // The application itself is not writable by the bot's user.
      assert.equal(statSync(join(runtime.rootfs, 'app', 'dist', 'main.js')).uid, 0);
    } else {
      assert.ok(readFileSync(join(scratch, 'chown.log'), 'utf8').includes(`${runtime.user} ${join(runtime.rootfs, 'data')}`));
    }
    assert.deepEqual(runtime.expose, [String(DEFAULT_PORT)]);
    assert.equal(runtime.stopSignal, 'SIGTERM');
    assert.ok(!dockerfile.all.some((i) => i.keyword === 'HEALTHCHECK'));
    assert.deepEqual(runtime.entrypoint, ['node', 'dist/main.js']);
    assert.equal(runtime.cmd, undefined);
    assert.equal(runtime.labels.get('org.opencontainers.image.licenses'), PACKAGE.license);
    assert.equal(runtime.labels.get('org.opencontainers.image.version'), PACKAGE.version, 'keep the version label in step with package.json');
    assert.match(runtime.labels.get('org.opencontainers.image.source') ?? '', /^https:\/\//);
  });

  test('ENTRYPOINT --version prints the package version', async () => {
    const ran = await runImage(['--version']);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stdout.trim(), `${PACKAGE.name} ${PACKAGE.version}`);
    assert.equal(ran.stderr, '');
  });

  test('ENTRYPOINT generate-registration, then check-config accepts a valid configuration', async () => {
    const data = join(runtime.rootfs, 'data');
    const registration = join(data, 'registration.yaml');
    const generated = await runImage(['generate-registration', '--url', `http://openclaw-toggle.openclaw.svc:${DEFAULT_PORT}`, '--out', registration]);
    assert.equal(generated.code, 0, generated.stderr);
    const reg = parseYaml(readFileSync(registration, 'utf8')) as Record<string, unknown>;
    assert.equal(reg['url'], `http://openclaw-toggle.openclaw.svc:${DEFAULT_PORT}`);
    assert.equal(statSync(registration).mode & 0o777, 0o600);
    if (uid !== undefined) assert.equal(statSync(registration).uid, uid);

    const config = join(data, 'config.yaml');
    writeFileSync(config, [
      'homeserver:', '  url: http://synapse.matrix.svc:8008',
      'bot:', '  allowedUsers: ["@alice:example.org"]',
      `appservice:`, `  registration: ${registration}`,
      'kubernetes:', '  deployment: openclaw', '  namespace: openclaw', '',
    ].join('\n'));
    if (uid !== undefined) chownSync(config, uid, gid as number);
    const ran = await runImage(['check-config', '-c', config]);
    assert.equal(ran.code, 0, ran.stderr);
    const summary = JSON.parse(ran.stdout) as Record<string, unknown>;
    assert.equal(summary['deployment'], 'openclaw/openclaw');
    assert.equal(summary['appserviceId'], 'openclaw-toggle');
    assert.equal(summary['listen'], `0.0.0.0:${DEFAULT_PORT}`);
    assert.equal(summary['storePath'], data, 'the image sets CRYPTO_STORE_PATH=/data');
    assert.ok(!ran.stdout.includes(reg['as_token'] as string) && !ran.stdout.includes(reg['hs_token'] as string), 'no tokens printed');

    const bad = await runImage(['check-config', '-c', config], { DEPLOYMENT_NAMESPACE: 'Agents_1' });
    assert.equal(bad.code, 2, bad.stderr);
    const lines = bad.stderr.trim().split('\n');
    assert.equal(lines.length, 1, bad.stderr);
    assert.match(lines[0] as string, /^config error: kubernetes\.namespace: "Agents_1" .*DEPLOYMENT_NAMESPACE/);
  });

  test('ENTRYPOINT runs the bot: /health answers, the state store is created on /data, SIGTERM ends it', async () => {
    const data = join(runtime.rootfs, 'data');
    const registration = join(data, 'registration.yaml');
    assert.ok(existsSync(registration), 'written by the previous test');
    const port = await freePort();
    const nobody = await freePort(); // nothing listens here: the homeserver is "not reachable yet"
    // Not in a pod here: a kubeconfig instead of the service account (its cluster is never reached before the homeserver answers).
    const kubeconfig = join(data, 'kubeconfig');
    writeFileSync(kubeconfig, `apiVersion: v1\nkind: Config\ncurrent-context: x\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${nobody}"}}]\n`
      + 'users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n', { mode: 0o600 });
    if (uid !== undefined) chownSync(kubeconfig, uid, gid ?? uid);
    const entry = runtime.entrypoint as string[];
    const env: NodeJS.ProcessEnv = {
      ...imageEnv, MATRIX_HOMESERVER: `http://127.0.0.1:${nobody}`, ALLOWED_USERS: '@alice:example.org', AS_REGISTRATION_FILE: registration,
      DEPLOYMENT_NAMESPACE: 'openclaw', HTTP_BIND_ADDRESS: '127.0.0.1', HTTP_PORT: String(port), KUBECONFIG: kubeconfig,
    };
    const child = spawn(which(entry[0] as string, env['PATH'] as string), entry.slice(1), {
      cwd: join(runtime.rootfs, runtime.workdir), env, stdio: ['ignore', 'pipe', 'pipe'], ...(uid !== undefined ? { uid, gid } : {}),
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('close', (code, signal) => res({ code, signal })));
    try {
      let health: Response | undefined;
      for (let i = 0; i < 100 && !health; i++) {
        health = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined);
        if (!health) await sleep(100);
      }
      assert.ok(health, `no /health within 10 s:\n${output}`);
      assert.equal(health.status, 200);
      const ready = await fetch(`http://127.0.0.1:${port}/ready`);
      assert.equal(ready.status, 503, 'not ready while the homeserver is unreachable');
      const state = join(data, 'state.sqlite');
      assert.ok(existsSync(state), `state store in CRYPTO_STORE_PATH:\n${output}`);
      assert.equal(statSync(state).mode & 0o077, 0, 'owner-only');
      if (uid !== undefined) assert.equal(statSync(state).uid, uid);
    } finally {
      child.kill((runtime.stopSignal ?? 'SIGTERM') as NodeJS.Signals);
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), 12_000);
    const end = await exited;
    clearTimeout(timer);
    assert.ok(end.code === 0 || end.signal === 'SIGTERM', `ended by ${end.signal ?? end.code}, expected within 12 s of SIGTERM:\n${output}`);
    assert.ok(!/fatal:/.test(output), output);
  });
});

/**
 * One control-plane process: started in its own process group with its output in a log file,
 * stopped by signalling that group, and killed when the test process dies.
 *
 * Go programs cannot arrange their own parent-death signal, so each one is started through
 * `setpriv --pdeathsig SIGKILL` (util-linux) when it is there: even a test process killed with
 * SIGKILL (where no exit hook runs) takes the control plane with it. The `exit` hook covers the
 * rest.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const liveGroups = new Set<number>();
let exitHookInstalled = false;

function trackGroup(pid: number): void {
  liveGroups.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of liveGroups) {
      try { process.kill(-p, 'SIGKILL'); } catch { /* gone */ }
    }
  });
}

let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath === undefined) {
    const probe = spawnSync('setpriv', ['--help'], { stdio: 'ignore' });
    setprivPath = probe.error === undefined && probe.status === 0 ? 'setpriv' : null;
  }
  return setprivPath;
}

export class Component {
  readonly name: string;
  readonly logFile: string;
  private readonly command: string;
  private readonly args: readonly string[];
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private alive = false;

  constructor(name: string, command: string, args: readonly string[], logFile: string) {
    this.name = name;
    this.command = command;
    this.args = args;
    this.logFile = logFile;
  }

  get running(): boolean { return this.alive; }
  get pid(): number | undefined { return this.child?.pid; }

  /** Starts the process (not waiting for it to be ready: callers probe what they need). */
  start(): void {
    if (this.alive) throw new Error(`${this.name} is already running`);
    // Appending, so a restart keeps the earlier run's log above the new one.
    const log = openSync(this.logFile, 'a', 0o600);
    const wrapper = setpriv();
    const [cmd, args] = wrapper ? [wrapper, ['--pdeathsig', 'SIGKILL', '--', this.command, ...this.args]] : [this.command, [...this.args]];
    const child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    child.unref(); // a test that forgets stop() can still exit; the exit hook kills the group
    this.child = child;
    this.alive = child.pid !== undefined;
    const pid = child.pid;
    if (pid !== undefined) trackGroup(pid);
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', () => { this.alive = false; if (pid !== undefined) liveGroups.delete(pid); resolve(); });
      child.once('error', () => { this.alive = false; resolve(); });
    });
  }

  /** Throws with the log's tail when the process has exited (call while waiting for readiness). */
  assertRunning(): void {
    if (!this.alive) throw new Error(`${this.name} exited (code ${this.child?.exitCode ?? this.child?.signalCode}); last lines of ${this.logFile}:\n${this.logTail(30)}`);
  }

  private signal(sig: NodeJS.Signals): void {
    const pid = this.child?.pid;
    if (pid === undefined) return;
    try { process.kill(-pid, sig); } catch { /* already gone */ }
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once the process has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.alive) {
      this.signal('SIGTERM');
      const done = await Promise.race([this.exited.then(() => true), sleep(graceMs).then(() => false)]);
      if (!done) this.signal('SIGKILL');
    }
    this.signal('SIGKILL');
    await this.exited;
  }

  logTail(lines = 30): string {
    let fd: number;
    try { fd = openSync(this.logFile, 'r'); } catch { return ''; }
    try {
      const size = fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, size - len);
      return buf.toString('utf8').split('\n').slice(-lines - 1).join('\n');
    } finally {
      closeSync(fd);
    }
  }
}

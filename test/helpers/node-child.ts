/**
 * Runs a short ES-module script in a child Node process, for what may crash, hang or change a
 * process-wide thing (a signal, a resource limit, the fd table): the parent sees the child's exit,
 * its signal, whether it timed out, and the JSON the script put in `out`. The script is run with
 * `lib` (the URL of dist/lib/index.js) and `native` (of the native backend's module) in scope and
 * `out = {}`; `out` is printed when the script's body returns. The child inherits this process's
 * environment (KVM_SEV_ADDON, LD_PRELOAD of an ASan build) and is waited for synchronously, so
 * nothing outlives the call.
 */
import { spawnSync } from 'node:child_process';

export interface ChildRun {
  status: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  out: Record<string, unknown> | undefined;
  stderr: string;
}

export interface ChildOptions {
  /** Node flags (`--expose-gc`). */
  flags?: string[];
  /** Killed (SIGKILL) after this long; default 60 s. */
  timeoutMs?: number;
  /** A soft and hard RLIMIT_NOFILE for the child (set by the shell that starts it). */
  maxFds?: number;
  /** Run as this user and group (the parent must be root). */
  uid?: number;
  gid?: number;
  env?: Record<string, string>;
}

const lib = new URL('../../lib/index.js', import.meta.url).href;
const native = new URL('../../lib/backends/native/native-backend.js', import.meta.url).href;

export function runChild(body: string, options: ChildOptions = {}): ChildRun {
  const script = `
    const lib = ${JSON.stringify(lib)};
    const native = ${JSON.stringify(native)};
    const out = {};
    ${body}
    process.stdout.write('\\n' + JSON.stringify(out) + '\\n');`;
  const args = [...(options.flags ?? []), '--input-type=module', '-e', script];
  const [cmd, argv] =
    options.maxFds !== undefined
      ? ['/bin/sh', ['-c', `ulimit -n ${options.maxFds} && exec "$0" "$@"`, process.execPath, ...args]]
      : [process.execPath, args];
  const r = spawnSync(cmd, argv, {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, ...options.env },
    ...(options.uid !== undefined ? { uid: options.uid } : {}),
    ...(options.gid !== undefined ? { gid: options.gid } : {}),
  });
  const last = (r.stdout ?? '').trim().split('\n').pop();
  let out: Record<string, unknown> | undefined;
  try {
    out = last ? (JSON.parse(last) as Record<string, unknown>) : undefined;
  } catch {
    out = undefined;
  }
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  return { status: r.status, signal: r.signal, timedOut, out, stderr: r.stderr ?? '' };
}

/** What a failed child said, for a test's message. */
export function describeChild(r: ChildRun): string {
  const how = r.timedOut ? 'timed out' : r.signal ? `died of ${r.signal}` : `exited ${r.status}`;
  return `child ${how}; stderr: ${r.stderr.slice(-1500)}`;
}

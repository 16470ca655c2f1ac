/**
 * Runs one of the handoff tests' child VMMs (`node <script> <role> <socket> <n>`): its exit, its
 * stderr, the JSON of its last stdout line, and a way to wait for a marker it prints on stderr.
 * A child still running when its test ends is killed, and a socket's folder removed, at teardown.
 */
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface ChildOut<J> {
  code: number | null;
  signal: NodeJS.Signals | null;
  json?: J;
  stderr: string;
}

export function startVmm<J>(
  t: ExecutionContext,
  script: string,
  role: string,
  sock: string,
  n: number,
  env: Record<string, string> = {},
): { done: Promise<ChildOut<J>>; waitFor(s: string): Promise<void> } {
  const p = spawn(process.execPath, [script, role, sock, String(n)], { env: { ...process.env, ...env } });
  // A test that failed half-way leaves no VMM behind (one blocked in accept() would never exit).
  t.teardown(() => void p.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  const waiters: [string, () => void][] = [];
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => {
    stderr += d;
    for (const [s, f] of waiters) if (stderr.includes(s)) f();
  });
  const done = new Promise<ChildOut<J>>((resolve) =>
    p.on('exit', (code, signal) => {
      const line = stdout.trim().split('\n').pop();
      resolve({ code, signal, stderr, ...(line ? { json: JSON.parse(line) as J } : {}) });
    }),
  );
  return { done, waitFor: (s) => new Promise<void>((r) => (stderr.includes(s) ? r() : waiters.push([s, r]))) };
}

/** A fresh socket path in a private temporary folder, removed when the test ends. */
export function socketPath(t: ExecutionContext, prefix = 'kvm-sev-handoff-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'vmm.sock');
}

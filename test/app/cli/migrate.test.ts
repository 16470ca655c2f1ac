/**
 * `kvm-sev migrate` / `kvm-sev receive` through the built CLI: two processes, a running guest moved
 * over TCP on loopback and over a Unix socket, and the usage errors.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { assertUsageError, cliPath, runCli } from '../../helpers/cli.js';
import { hwTestSerial, kvmDevice } from '../../helpers/hw.js';

const kvm = kvmDevice();

/** `kvm-sev receive …` in the background: its first stderr line (where it listens) and its end. */
function startReceive(t: ExecutionContext, args: string[]) {
  const p = spawn(process.execPath, [cliPath, 'receive', ...args, '--json'], { env: { ...process.env, NO_COLOR: '1' } });
  t.teardown(() => void p.kill('SIGKILL'));
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  const listening = new Promise<string>((resolve, reject) => {
    p.stderr.on('data', (d) => {
      err += d;
      const m = /listening on (\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    p.on('exit', () => reject(new Error(`receive exited: ${err}`)));
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    p.on('exit', (code) => resolve({ code, out, err })),
  );
  return { listening, done };
}

hwTestSerial(kvm, 'kvm-sev migrate moves the running demo guest to kvm-sev receive over TCP; it counts on there', async (t) => {
  const recv = startReceive(t, ['--listen', '0', '--steps', '40']);
  const at = await recv.listening;
  const port = at.split(':').pop()!;
  const m = runCli(['migrate', '--to', `127.0.0.1:${port}`, '--steps', '200', '--dirty-rate', '2000']);
  t.is(m.status, 0, m.stderr + m.stdout);
  t.regex(m.stdout, /round 0: \d+ private \+ \d+ shared pages sent/);
  const moved = /the guest stopped at step (\d+) and now runs on the target/.exec(m.stdout);
  t.truthy(moved, m.stdout);
  const r = await recv.done;
  t.is(r.code, 0, r.err);
  const j = JSON.parse(r.out) as { first: number; consecutive: boolean; status: string; privatePages: number };
  t.is(j.first, Number(moved![1]) + 1);
  t.true(j.consecutive);
  t.is(j.status, 'RUNNING');
  t.true(j.privatePages >= 240);
});

hwTestSerial(kvm, 'kvm-sev migrate over a Unix socket, --json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-migrate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'target.sock');
  const recv = startReceive(t, ['--unix', sock, '--steps', '20']);
  await recv.listening;
  const m = runCli(['migrate', '--unix', sock, '--steps', '100', '--json']);
  t.is(m.status, 0, m.stderr);
  const j = JSON.parse(m.stdout) as { owner: string; rounds: number; downtimeMs: number; lastStep: number };
  t.is(j.owner, 'target');
  const r = await recv.done;
  t.is((JSON.parse(r.out) as { first: number }).first, j.lastStep + 1);
});

hwTestSerial(kvm, 'kvm-sev migrate to nobody: exit 1, the guest was never sent', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-migrate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const m = runCli(['migrate', '--unix', join(dir, 'nobody.sock'), '--steps', '10']);
  t.is(m.status, 1, m.stderr + m.stdout);
  t.regex(m.stdout, /not moved \(the guest runs on here\): could not connect/);
});

test('kvm-sev migrate / receive: usage errors', (t) => {
  assertUsageError(t, runCli(['migrate']), /--to HOST:PORT or --unix PATH/);
  assertUsageError(t, runCli(['migrate', '--to', 'x:y']), /--to must be \[HOST:\]PORT/);
  assertUsageError(t, runCli(['migrate', '--to', '1', '--downtime', 'soon']), /--downtime must be an integer/);
  assertUsageError(t, runCli(['migrate', '--to', '1', '--backend', 'mock']), /runs no guest code/);
  assertUsageError(t, runCli(['receive']), /--listen \[HOST:\]PORT or --unix PATH/);
});

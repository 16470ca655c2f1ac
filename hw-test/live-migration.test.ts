/**
 * Host-to-host live migration on the native backend, against a real SEV host's kernel and firmware:
 * `kvm-sev receive --backend native` and `kvm-sev migrate --backend native` as two processes (two
 * VMMs on the same platform: SEND_START to the platform's own PDH is what the firmware allows, and the
 * chain is checked against AMD's built-in roots). Pending on a host without /dev/sev, with the reason.
 * The same code runs here as on the hybrid (test/migration/live/); only the backend differs.
 */
import { spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { cliPath, runCli } from '../test/helpers/cli.js';
import { hwTestSerial, kvmDevice, sevDevice, type Requirement } from '../test/helpers/hw.js';

/** Both /dev/kvm and /dev/sev. */
function sevHost(): Requirement {
  const k = kvmDevice();
  if (!k.ok) return k;
  const s = sevDevice();
  if (!s.ok)
    return {
      ok: false,
      reason: `no SEV platform here (${s.reason}): live migration of an SEV guest needs the AMD firmware's SEND/RECEIVE commands`,
    };
  return s;
}

function startReceive(t: ExecutionContext) {
  const p = spawn(process.execPath, [cliPath, 'receive', '--backend', 'native', '--listen', '0', '--steps', '40', '--json']);
  t.teardown(() => void p.kill('SIGKILL'));
  let out = '';
  let err = '';
  p.stdout.on('data', (d) => (out += d));
  const port = new Promise<number>((resolve, reject) => {
    p.stderr.on('data', (d) => {
      err += d;
      const m = /listening on \S+:(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    p.on('exit', () => reject(new Error(`receive exited: ${err}`)));
  });
  const done = new Promise<{ code: number | null; out: string; err: string }>((r) => p.on('exit', (code) => r({ code, out, err })));
  return { port, done };
}

hwTestSerial(sevHost(), 'native: a running SEV guest moves between two VMM processes and counts on', async (t) => {
  const recv = startReceive(t);
  const port = await recv.port;
  const m = runCli(['migrate', '--backend', 'native', '--to', `127.0.0.1:${port}`, '--steps', '200', '--json']);
  t.is(m.status, 0, m.stderr + m.stdout);
  const j = JSON.parse(m.stdout) as { owner: string; lastStep: number };
  t.is(j.owner, 'target');
  const r = await recv.done;
  t.is(r.code, 0, r.err);
  const got = JSON.parse(r.out) as { first: number; consecutive: boolean; status: string };
  t.is(got.first, j.lastStep + 1);
  t.true(got.consecutive);
  t.is(got.status, 'RUNNING');
});

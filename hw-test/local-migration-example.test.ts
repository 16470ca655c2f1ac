/**
 * examples/local-migration: the README's two-process handoff, run as a user would run it. The new
 * VMM listens on a Unix socket, the old one connects and hands its running SEV guest over; the
 * guest's counter goes on where it stopped. Both on the hybrid backend with the shared mock SEV
 * service (a private one: TMPDIR points the default service socket into a fresh folder).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const example = (name: string) => join(root, 'dist/examples/local-migration', `${name}.js`);

function start(t: ExecutionContext, name: string, socket: string, env: NodeJS.ProcessEnv) {
  const p = spawn(process.execPath, [example(name), socket], { env });
  t.teardown(() => p.exitCode === null && p.kill('SIGKILL'));
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
    p.on('exit', (code) => resolve({ code, out, err })),
  );
  const printed = (s: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (out.includes(s) ? resolve() : undefined);
      p.stdout.on('data', check);
      p.on('exit', () => reject(new Error(`${name} exited before printing '${s}': ${err}`)));
      check();
    });
  return { p, done, printed };
}

hwTest(
  kvmDevice(),
  'examples/local-migration: the new VMM takes the running SEV guest over from the old one, process to process',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-example-'));
    const env = { ...process.env, TMPDIR: dir };
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const socket = join(dir, 'vmm.sock');
    const target = start(t, 'new-vmm', socket, env);
    await target.printed('new VMM: listening');
    const source = start(t, 'old-vmm', socket, env);
    const [o, n] = await Promise.all([source.done, target.done]);
    t.is(o.code, 0, o.err);
    t.is(n.code, 0, n.err);
    t.regex(o.out, /old VMM: the guest counted 1 2 3\n/);
    t.regex(o.out, /old VMM: the guest now belongs to the target VMM\n/);
    t.regex(n.out, /new VMM: took the guest over \(move\) and it counted on: 4 5 6\n/);
  },
);

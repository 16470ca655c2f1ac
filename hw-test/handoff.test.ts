/**
 * The VMM upgrade across processes on the real /dev/kvm: a counter guest runs in process A, is
 * handed to process B mid-run, and B sees the sequence continue with no step lost or repeated.
 * Kills at each point show who owns the guest afterwards.
 */
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { startVmm, socketPath } from '../test/helpers/child-vmm.js';
import { hwTestSerial, kvmDevice } from '../test/helpers/hw.js';

const vmm = fileURLToPath(new URL('./helpers/handoff-vmm.js', import.meta.url));
const req = kvmDevice();

type Json = { seen: number[]; owner: string; reason?: string | null; devices?: Record<string, unknown> };

const start = (t: ExecutionContext, role: string, sock: string, n: number, env: Record<string, string> = {}) =>
  startVmm<Json>(t, vmm, role, sock, n, env);

hwTestSerial(req, 'process A hands the running guest to process B; the counter continues exactly', async (t) => {
  const sock = socketPath(t);
  const b = start(t, 'target', sock, 500);
  await b.waitFor('TARGET-LISTENING');
  const a = start(t, 'source', sock, 500);
  const [ra, rb] = await Promise.all([a.done, b.done]);
  t.is(ra.code, 0, ra.stderr);
  t.is(rb.code, 0, rb.stderr);
  t.is(ra.json!.owner, 'target');
  t.is(rb.json!.owner, 'target');
  const sa = ra.json!.seen;
  const sb = rb.json!.seen;
  t.deepEqual(sa.slice(0, 2), [1, 2]);
  t.is(sb[0], sa[sa.length - 1]! + 1, 'B continues right after A');
  t.true(sb.every((v, i) => i === 0 || v === sb[i - 1]! + 1));
  t.is(rb.json!.devices!['note'], 'from the old VMM');
});

hwTestSerial(req, "B killed after taking over: A has already let go (the guest was B's)", async (t) => {
  const sock = socketPath(t);
  const b = start(t, 'target', sock, 100, { HANDOFF_DIE: 'after-takeover' });
  await b.waitFor('TARGET-LISTENING');
  const a = start(t, 'source', sock, 100);
  const [ra, rb] = await Promise.all([a.done, b.done]);
  t.is(rb.signal, 'SIGKILL');
  t.is(ra.json!.owner, 'target');
});

hwTestSerial(req, 'A killed before sending: B gets nothing and has no guest', async (t) => {
  const sock = socketPath(t);
  const b = start(t, 'target', sock, 100);
  await b.waitFor('TARGET-LISTENING');
  const a = start(t, 'source', sock, 100, { HANDOFF_DIE: 'before-send' });
  const ra = await a.done;
  t.is(ra.signal, 'SIGKILL');
  // B is still waiting for a connection: nothing arrived. Connect and close to release it.
  const { NativeBackend } = await import('../lib/backends/native/native-backend.js');
  const nb = new NativeBackend();
  nb.unixConnect(sock).close();
  const rb = await b.done;
  t.not(rb.code, 0);
  t.regex(rb.stderr, /closed the socket/);
});

hwTestSerial(req, 'B killed during the receive (before ready): A still owns the guest and resumes it', async (t) => {
  const sock = socketPath(t);
  const b = start(t, 'target', sock, 100, { HANDOFF_DIE: 'before-ready' });
  await b.waitFor('TARGET-LISTENING');
  const a = start(t, 'source', sock, 100);
  const [ra, rb] = await Promise.all([a.done, b.done]);
  t.is(rb.signal, 'SIGKILL');
  t.is(ra.code, 0, ra.stderr);
  t.is(ra.json!.owner, 'source');
  const s = ra.json!.seen;
  t.true(s.length >= 200, 'A ran 100 more exits after the failed handoff');
  t.true(
    s.every((v, i) => i === 0 || v === s[i - 1]! + 1),
    'and the guest lost nothing',
  );
});

hwTestSerial(req, 'A killed after pausing the guest, before sending it: B has no guest, nothing leaks', async (t) => {
  const sock = socketPath(t);
  const b = start(t, 'target', sock, 100);
  await b.waitFor('TARGET-LISTENING');
  const a = start(t, 'source', sock, 100, { HANDOFF_DIE: 'after-pause' });
  const [ra, rb] = await Promise.all([a.done, b.done]);
  t.is(ra.signal, 'SIGKILL');
  t.not(rb.code, 0, 'B gives up: the old VMM went away before handing the guest over');
  t.regex(rb.stderr, /closed the socket/);
});

/**
 * The VMM upgrade of an SEV guest across processes: real KVM from /dev/kvm, SEV served by the shared
 * mock SEV service (one daemon, several processes). An SEV counter guest launched in process A is
 * handed to process B by a one-time token (the 2021 kernel, seed 000) or by MOVE from the VM fd
 * received over SCM_RIGHTS (upstream); B continues the count with no step lost. Kills show who owns
 * the guest and that the token and ASIDs behave as the kernel's would.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { HybridBackend } from '../lib/backends/hybrid/hybrid-backend.js';
import { Kvm } from '../lib/kvm/kvm.js';
import type { KernelProfile } from '../lib/backends/mock/options.js';
import { SevGuestCommands } from '../lib/sev/kvm-sev-commands.js';
import { KVM_X86_DEFAULT_VM } from '../lib/uapi/constants.js';
import { startVmm, type ChildOut } from '../test/helpers/child-vmm.js';
import { hwTestSerial, kvmDevice } from '../test/helpers/hw.js';

const vmm = fileURLToPath(new URL('./helpers/sev-handoff-vmm.js', import.meta.url));
const req = kvmDevice();

type Json = { seen: number[]; owner: string; reason?: string | null; encContext?: string | null; method: string };

const start = (t: ExecutionContext, role: string, sock: string, n: number, env: Record<string, string> = {}) =>
  startVmm<Json>(t, vmm, role, sock, n, env);

/**
 * A test's own daemon (a fresh socket), held by this process so that its state can be queried. The
 * connection and the folder go when the test ends (the daemon exits once its last client has gone).
 */
function setup(t: ExecutionContext, kernel: KernelProfile) {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-sev-handoff-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sevSocket = join(dir, 'sev.sock');
  const observer = new HybridBackend({ kernel, sevService: { socket: sevSocket } });
  t.teardown(() => observer.sevService!.close());
  const env = { SEV_SOCKET: sevSocket, SEV_KERNEL: kernel };
  return { sock: join(dir, 'vmm.sock'), env, observer };
}

/** Waits until the daemon has let go of every VM (a killed client's disconnect is seen asynchronously). */
async function settled(observer: HybridBackend) {
  for (let i = 0; i < 100; i++) {
    const s = observer.sevServiceStatus();
    if (s.vms.length === 0) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  return observer.sevServiceStatus();
}

function continues(t: ExecutionContext, ra: ChildOut<Json>, rb: ChildOut<Json>): void {
  const sa = ra.json!.seen;
  const sb = rb.json!.seen;
  t.deepEqual(sa.slice(0, 2), [1, 2]);
  t.is(sb[0], sa[sa.length - 1]! + 1, 'B continues right after A');
  t.true(
    sb.every((v, i) => i === 0 || v === sb[i - 1]! + 1),
    'no step lost or repeated',
  );
}

for (const [kernel, method] of [
  ['local-migration-2021', 'token'],
  ['7.2', 'move'],
] as const) {
  hwTestSerial(req, `SEV guest handed from A to B by ${method} (kernel ${kernel}); the counter continues; no ASID left`, async (t) => {
    const { sock, env, observer } = setup(t, kernel);
    const b = start(t, 'target', sock, 300, env);
    await b.waitFor('TARGET-LISTENING');
    const a = start(t, 'source', sock, 300, env);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    t.is(ra.code, 0, ra.stderr);
    t.is(rb.code, 0, rb.stderr);
    t.is(ra.json!.owner, 'target');
    t.is(rb.json!.owner, 'target');
    t.is(ra.json!.encContext, method, 'handOff says which method it used');
    t.is(rb.json!.encContext, method, 'takeOver says which method it used');
    continues(t, ra, rb);
    const s = await settled(observer);
    t.deepEqual(s.snapshot.asidsHeld, []);
    t.is(s.snapshot.tokens, 0);
    observer.sevService!.close();
  });
}

hwTestSerial(
  req,
  'token: A killed after LOCAL_SEND, before handing over: the token dies with its source (EFAULT on receive)',
  async (t) => {
    const { sock, env, observer } = setup(t, 'local-migration-2021');
    const b = start(t, 'target', sock, 100, env);
    await b.waitFor('TARGET-LISTENING');
    const a = start(t, 'source', sock, 100, { ...env, HANDOFF_DIE: 'after-send' });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    t.is(ra.signal, 'SIGKILL');
    t.not(rb.code, 0, 'B has no guest');
    t.regex(rb.stderr, /closed the socket/);
    const token = BigInt(`0x${/TOKEN=([0-9a-f]+)/.exec(ra.stderr)![1]}`);
    const s = await settled(observer);
    t.deepEqual(s.snapshot.asidsHeld, [], 'the source was destroyed: its ASID is free');
    // Anyone redeeming the token now: the staged info was lost with its source.
    const kvm = Kvm.open({ backend: observer });
    t.teardown(() => kvm.close());
    const vm = kvm.createVm(KVM_X86_DEFAULT_VM);
    t.teardown(() => vm.close());
    vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'late-receiver' });
    const cmds = new SevGuestCommands(vm, null, { localMigration: { profile: 'local-migration-2021' } });
    await cmds.init();
    await t.throwsAsync(cmds.localReceive(token), { code: 'EFAULT' } as never);
    vm.close();
    kvm.close();
    observer.sevService!.close();
  },
);

for (const [kernel, method] of [
  ['local-migration-2021', 'token'],
  ['7.2', 'move'],
] as const) {
  hwTestSerial(req, `${method}: B killed before the receive: A still owns the guest and resumes it; nothing leaks`, async (t) => {
    const { sock, env, observer } = setup(t, kernel);
    const b = start(t, 'target', sock, 100, { ...env, HANDOFF_DIE: 'before-ready' });
    await b.waitFor('TARGET-LISTENING');
    const a = start(t, 'source', sock, 100, env);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    t.is(rb.signal, 'SIGKILL', rb.stderr.slice(-3000));
    t.is(ra.code, 0, ra.stderr);
    t.is(ra.json!.owner, 'source');
    const s = ra.json!.seen;
    t.true(s.length >= 200, 'A ran on after the failed handoff');
    t.true(
      s.every((v, i) => i === 0 || v === s[i - 1]! + 1),
      'and the guest lost nothing',
    );
    const st = await settled(observer);
    t.deepEqual(st.snapshot.asidsHeld, []);
    observer.sevService!.close();
  });

  hwTestSerial(req, `${method}: B killed after the receive: the context was B's and dies with it; no ASID leaks`, async (t) => {
    const { sock, env, observer } = setup(t, kernel);
    const b = start(t, 'target', sock, 100, { ...env, HANDOFF_DIE: 'after-takeover' });
    await b.waitFor('TARGET-LISTENING');
    const a = start(t, 'source', sock, 100, env);
    const [ra, rb] = await Promise.all([a.done, b.done]);
    t.is(rb.signal, 'SIGKILL', rb.stderr.slice(-3000));
    t.is(ra.json!.owner, 'target', 'A had let go');
    t.is(ra.json!.encContext, method);
    const st = await settled(observer);
    t.deepEqual(st.snapshot.asidsHeld, []);
    t.deepEqual(st.snapshot.vms, []);
    observer.sevService!.close();
  });
}

/**
 * The shared mock SEV service: hybrid backends in one process, each with its own connection (as two
 * VMM processes would have), share one daemon's SEV state. A token made by one is redeemed by the
 * other (seed 000); it becomes invalid once its source is destroyed before the receive; a client's
 * disconnect releases what it held; MOVE resolves a VM by its fd (kcmp).
 */
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HybridBackend } from '../../../lib/backends/hybrid/hybrid-backend.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { SevGuestCommands } from '../../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../../lib/sev/launch.js';
import { SevPlatform } from '../../../lib/sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM } from '../../../lib/uapi/constants.js';
import { kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();
const hw = req.ok ? test.serial : (title: string) => test.todo(`${title} — pending: ${req.reason}`);
const LM = { localMigration: { profile: 'local-migration-2021' as const } };

/** A daemon socket in a private folder, removed when the test ends. */
function sockPath(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-daemon-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'sev.sock');
}

/** A client of the daemon (as one VMM process would be); disconnected when the test ends. */
function client(t: ExecutionContext, socket: string, kernel: '7.2' | 'local-migration-2021') {
  const backend = new HybridBackend({ kernel, sevService: { socket } });
  t.teardown(() => backend.sevService!.close());
  const kvm = Kvm.open({ backend });
  t.teardown(() => kvm.close());
  return { backend, kvm };
}

async function launched(t: ExecutionContext, c: ReturnType<typeof client>, type: number) {
  const platform = SevPlatform.open(c.backend);
  t.teardown(() => platform.close());
  const vm = c.kvm.createVm(type);
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'daemon-test' });
  mem.bytes.fill(0x5a, 0, 0x1000);
  const g = await SevLaunch.init(vm, { platform });
  const launching = await g.launchStart({ policy: 0 });
  await launching.launchUpdateData(mem.range(0n, 0x1000));
  await (await launching.launchMeasure()).launchFinish();
  return { platform, vm, mem, cmds: new SevGuestCommands(vm, platform, type === KVM_X86_DEFAULT_VM ? LM : {}) };
}

hw('two clients: a token made by one is redeemed by the other; the disconnect of both leaves no ASID', async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, 'local-migration-2021');
  const b = client(t, socket, 'local-migration-2021');
  t.is(a.backend.sevService!.daemonPid, b.backend.sevService!.daemonPid, 'one daemon serves both');
  const src = await launched(t, a, KVM_X86_DEFAULT_VM);
  const before = a.backend.sevSnapshot.vms.find((v) => v.active)!;
  const token = await src.cmds.localSend();
  const vm = b.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'daemon-test-b' });
  const cmds = new SevGuestCommands(vm, null, LM);
  await cmds.init();
  await cmds.localReceive(token);
  await t.throwsAsync(src.cmds.guestStatus(), { code: 'EPERM' } as never, 'the sent source accepts only DBG_*');
  const again = b.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => again.close());
  const againCmds = new SevGuestCommands(again, null, LM);
  await againCmds.init();
  await t.throwsAsync(againCmds.localReceive(token), { code: 'EFAULT' } as never, 'a token is for one use only');
  again.close();
  src.platform.close();
  a.kvm.close();
  a.backend.sevService!.close();
  t.like(
    b.backend.sevSnapshot.vms.find((v) => v.active),
    { handle: before.handle, asid: before.asid },
  );
  t.deepEqual(b.backend.sevServiceStatus().snapshot.asidsHeld, [before.asid]);
  vm.close();
  t.deepEqual(b.backend.sevServiceStatus().snapshot.asidsHeld, [], 'no ASID leaks');
  b.kvm.close();
  b.backend.sevService!.close();
});

hw('the token becomes invalid once its source is destroyed before the receive (EFAULT)', async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, 'local-migration-2021');
  const b = client(t, socket, 'local-migration-2021');
  const src = await launched(t, a, KVM_X86_DEFAULT_VM);
  const handle = a.backend.sevSnapshot.vms.find((v) => v.active)!.handle;
  const token = await src.cmds.localSend();
  a.backend.sevService!.close(); // A's process "dies": the daemon drops its references
  // The daemon learns of A's end from its socket, asynchronously: B asks only once it has (as on a host,
  // where the VM is gone once the dead process's fds are).
  for (let i = 0; i < 500 && b.backend.sevServiceStatus().snapshot.vms.some((v) => v.handle === handle); i++)
    await new Promise((r) => setTimeout(r, 10));
  const vm = b.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'daemon-test-b' });
  const cmds = new SevGuestCommands(vm, null, LM);
  await cmds.init();
  await t.throwsAsync(cmds.localReceive(token), { code: 'EFAULT' } as never);
  const s = b.backend.sevServiceStatus();
  t.is(s.snapshot.tokens, 0, 'the staged info went with its source');
  t.false(
    s.snapshot.vms.some((v) => v.handle === handle),
    'the guest is gone',
  );
  t.is(s.snapshot.asidsHeld.length, 1, "only B's own (INIT) ASID");
  vm.close();
  t.deepEqual(b.backend.sevServiceStatus().snapshot.asidsHeld, []);
  b.kvm.close();
  b.backend.sevService!.close();
  a.kvm.close();
});

hw('MOVE from a VM fd received over SCM_RIGHTS, resolved by the daemon; the received fd keeps the VM alive', async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, '7.2');
  const b = client(t, socket, '7.2');
  const src = await launched(t, a, KVM_X86_SEV_VM);
  const before = a.backend.sevSnapshot.vms.find((v) => v.active)!;
  const [sa, sb] = a.backend.socketPair();
  t.teardown(() => [sa, sb].forEach((s) => s.close()));
  await a.backend.sendFds(sa, new Uint8Array([1]), [src.vm.fd]);
  // b's hybrid receives it (a socketpair end, as if from another process)
  const got = await b.backend.recvFds(sb, 16, 4);
  t.teardown(() => got.fds.forEach((f) => f.close()));
  const vmFd = got.fds[0]!;
  t.is(vmFd.kind, 'vm');
  src.platform.close();
  a.kvm.close(); // A lets go; B's fd keeps the VM (and its context)
  t.truthy(b.backend.sevSnapshot.vms.find((v) => v.active && v.handle === before.handle));
  const vm = b.kvm.createVm(KVM_X86_SEV_VM);
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'daemon-test-b' });
  new SevGuestCommands(vm).moveEncContextFromFd(vmFd);
  const snap = b.backend.sevSnapshot;
  t.like(
    snap.vms.find((v) => v.active),
    { handle: before.handle, asid: before.asid },
  );
  vmFd.close();
  vm.close();
  t.deepEqual(b.backend.sevServiceStatus().snapshot.asidsHeld, []);
  sa.close();
  sb.close();
  a.backend.sevService!.close();
  b.backend.sevService!.close();
});

hw('sameFile: two fds of one open file (sent over SCM_RIGHTS) are the same file; two VMs are not', async (t) => {
  const { NativeBackend } = await import('../../../lib/backends/native/native-backend.js');
  const n = new NativeBackend();
  const kvm = n.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const { KVM_CREATE_VM } = await import('../../../lib/uapi/ioctls.js');
  const v1 = n.ioctlFd(kvm, KVM_CREATE_VM, 0);
  t.teardown(() => v1.close());
  const v2 = n.ioctlFd(kvm, KVM_CREATE_VM, 0);
  t.teardown(() => v2.close());
  const [x, y] = n.socketPair();
  t.teardown(() => [x, y].forEach((s) => s.close()));
  await n.sendFds(x, new Uint8Array([0]), [v1]);
  const r = await n.recvFds(y, 4, 2);
  t.teardown(() => r.fds.forEach((f) => f.close()));
  t.true(n.addon.sameFile(v1, r.fds[0]!));
  t.false(n.addon.sameFile(v1, v2));
  t.true(n.addon.sameFile(v1, v1));
  for (const f of [...r.fds, v1, v2, x, y, kvm]) f.close();
});

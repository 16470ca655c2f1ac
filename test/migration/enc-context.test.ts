/**
 * Moving an SEV context to another VM by what the kernel offers: a one-time token on the 2021 kernel,
 * KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM upstream; the handoff's SEV half on both.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../../lib/kvm/kvm.js';
import { pickEncContextMethod, sevHandoff, transferEncContext } from '../../lib/migration/enc-context.js';
import { MockHost } from '../../lib/backends/mock/mock-host.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../lib/sev/launch.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM } from '../../lib/uapi/constants.js';

async function launched(t: ExecutionContext, host: MockHost, type: number, local = false) {
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const platform = SevPlatform.open(host);
  t.teardown(() => platform.close());
  const vm = kvm.createVm(type);
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const guest = await SevLaunch.init(vm, { platform });
  const running = await (await (await guest.launchStart({ policy: 0 })).launchMeasure()).launchFinish();
  const cmds = new SevGuestCommands(vm, platform, local ? { localMigration: { profile: 'local-migration-2021' } } : {});
  return { kvm, platform, vm, running, cmds };
}

test('upstream kernel: move, chosen and said; the source is dead, the context moved', async (t) => {
  const host = new MockHost({ kernel: '7.2' });
  const a = await launched(t, host, KVM_X86_SEV_VM);
  const choice = pickEncContextMethod(a.kvm);
  t.is(choice.method, 'move');
  t.regex(choice.why, /MOVE_ENC_CONTEXT_FROM/);
  const before = host.sev.snapshot().vms.find((v) => v.active)!;
  const b = a.kvm.createVm(KVM_X86_SEV_VM);
  t.teardown(() => b.close());
  t.is(await transferEncContext(a.cmds, new SevGuestCommands(b), choice.method), 'move');
  const snap = host.sev.snapshot();
  t.is(snap.vms.filter((v) => v.active).length, 1);
  t.like(
    snap.vms.find((v) => v.active),
    { handle: before.handle, asid: before.asid },
  );
  t.throws(() => a.vm.checkExtension(1), { code: 'EIO' } as never, 'the moved-from VM is dead');
  // Upstream, id 22 is INIT2: naming local-migration ids does not turn it into LOCAL_SEND.
  t.regex(pickEncContextMethod(a.kvm, { localMigration: { profile: 'local-migration-2021' } }).why, /id 22 is KVM_SEV_INIT2/);
  b.close();
  a.platform.close();
  a.kvm.close();
});

test('the 2021 kernel: a one-time token; the source then accepts only DBG, the target has the guest', async (t) => {
  const host = new MockHost({ kernel: 'local-migration-2021' });
  const a = await launched(t, host, KVM_X86_DEFAULT_VM, true);
  const choice = pickEncContextMethod(a.kvm, { localMigration: { profile: 'local-migration-2021' } });
  t.is(choice.method, 'token');
  const b = a.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => b.close());
  const bc = new SevGuestCommands(b, a.platform, { localMigration: { profile: 'local-migration-2021' } });
  await bc.init();
  const handle = (await a.cmds.guestStatus()).handle;
  t.is(await transferEncContext(a.cmds, bc, 'token'), 'token');
  await t.throwsAsync(a.cmds.guestStatus(), { code: 'EPERM' } as never, 'after a send the source accepts only DBG_*');
  t.like(
    host.sev.snapshot().vms.find((v) => v.handle === handle && v.active),
    { handle },
  );
  // The token was for one use only.
  const c = a.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => c.close());
  const cc = new SevGuestCommands(c, a.platform, { localMigration: { profile: 'local-migration-2021' } });
  await cc.init();
  await t.throwsAsync(a.cmds.localSend(), { code: 'EEXIST' } as never, 'a second send');
  c.close();
  b.close();
  a.platform.close();
  a.kvm.close();
});

test('sevHandoff: the handoff SEV half sends a token or nothing, and receives by token or move', async (t) => {
  const host = new MockHost({ kernel: 'local-migration-2021' });
  const a = await launched(t, host, KVM_X86_DEFAULT_VM, true);
  const h = sevHandoff({ source: a.cmds, method: 'token', localMigration: { profile: 'local-migration-2021' }, init: (c) => c.init() });
  const sent = await h.send();
  t.is(sent.method, 'token');
  t.is(typeof sent.token, 'bigint');
  const b = a.kvm.createVm(KVM_X86_DEFAULT_VM);
  t.teardown(() => b.close());
  const src = host.sev.snapshot().vms.find((v) => v.active)!;
  await h.receive(b, a.vm.fd, sent);
  const vms = host.sev.snapshot().vms;
  t.is(vms.length, 2);
  t.like(vms[1], { active: true, asid: src.asid, handle: src.handle }, 'the new VM holds the context');
  await t.throwsAsync(a.cmds.guestStatus(), { code: 'EPERM' } as never, 'the sent source accepts only DBG_*');
  t.deepEqual(await sevHandoff({ method: 'move' }).send(), { method: 'move' });
  b.close();
  a.platform.close();
  a.kvm.close();
});

/**
 * The 2021 local-migration patch (seed 000) in the 'local-migration-2021' profile: ids 22/23 are
 * LOCAL_SEND/LOCAL_RECEIVE, a random non-zero 64-bit token valid once, the source limited to DBG_*
 * after a send, EEXIST for a second send, EPERM for SEV-ES, the target's preconditions, EFAULT for
 * unknown or used tokens, and what moves (ASID, handle, pages_locked, regions) and what is freed.
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../../../lib/backend/contract.js';
import { MockHost } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_enable_cap, kvm_enc_region } from '../../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_local_receive, kvm_sev_local_send } from '../../../../../lib/uapi/local-migration-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_guest_status,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
} from '../../../../../lib/uapi/sev-structs.js';
import { Kvm } from '../../../../../lib/kvm/kvm.js';
import { SevGuestCommands, SevPlatform } from '../../../../../lib/sev/index.js';

/** /dev/kvm, /dev/sev and 64 KiB of memory on a 2021-kernel mock; every fd opened through it here is closed at teardown. */
function setup(t: ExecutionContext, host = new MockHost({ kernel: 'local-migration-2021', trace: true })) {
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const mem = host.mmapAnonymous(0x10000);
  t.teardown(() => mem.unmap()); // after the VMs (registered later, closed first)
  const newVm = () => {
    const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => vm.close());
    return vm;
  };
  const code = (f: () => unknown) =>
    (() => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return (e as { code: string }).code;
      }
    })();
  const op = (v: BackendFd, id: number, data: IoctlStruct | null = null) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  // Laid out by the profile's command ids (22 is LOCAL_SEND here, INIT2 upstream).
  const local = (v: BackendFd, id: number, data: IoctlStruct) =>
    host.ioctl(v, ioc.KVM_MEMORY_ENCRYPT_OP, host.sevCommandTable(v).kvm_sev_cmd.arg({ id, data }));
  const send = (v: BackendFd): bigint => {
    const d = kvm_sev_local_send.arg({});
    local(v, 22, d);
    return kvm_sev_local_send.decode(d.bytes).info_token;
  };
  const receive = (v: BackendFd, token: bigint): number => {
    const d = kvm_sev_local_receive.arg({ info_token: token });
    local(v, 23, d);
    return kvm_sev_local_receive.decode(d.bytes).handle;
  };
  const region = (offset: number, length: number) =>
    kvm_enc_region.arg({ addr: { kind: 'mapping', mapping: mem, offset, length }, size: BigInt(length) });
  const guest = (es = false) => {
    const vm = newVm();
    op(vm, es ? KVM_SEV.ES_INIT : KVM_SEV.INIT);
    return vm;
  };
  const launched = () => {
    const vm = guest();
    op(vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
    new Uint8Array(mem.buffer).set(new TextEncoder().encode('local migration!'), 0x2000);
    op(
      vm,
      KVM_SEV.LAUNCH_UPDATE_DATA,
      kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0x2000, length: 16 } }),
    );
    op(vm, KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(48) }));
    op(vm, KVM_SEV.LAUNCH_FINISH);
    return vm;
  };
  const snap = () => host.sev.snapshot();
  return { host, kvm, sev, mem, newVm, code, op, send, receive, region, guest, launched, snap };
}

test('LOCAL_SEND: a random non-zero token; then only DBG_* works on the source (EPERM otherwise); a second send is EEXIST', (t) => {
  const s = setup(t);
  const other = s.send(s.launched());
  const src = s.launched(); // last to encrypt the shared test page
  const token = s.send(src);
  t.is(typeof token, 'bigint');
  t.not(token, 0n);
  t.not(other, token);
  for (const id of [KVM_SEV.GUEST_STATUS, KVM_SEV.LAUNCH_FINISH, KVM_SEV.INIT, 99]) {
    t.is(
      s.code(() => s.op(src, id, id === KVM_SEV.GUEST_STATUS ? kvm_sev_guest_status.arg({}) : null)),
      'EPERM',
      `id ${id}`,
    );
  }
  const out = new Uint8Array(16);
  s.op(
    src,
    KVM_SEV.DBG_DECRYPT,
    kvm_sev_dbg.arg({ src_uaddr: { kind: 'mapping', mapping: s.mem, offset: 0x2000, length: 16 }, dst_uaddr: out }),
  );
  t.is(new TextDecoder().decode(out), 'local migration!');
  t.is(
    s.code(() => s.send(src)),
    'EEXIST',
  );
  t.is(
    s.code(() => s.send(s.newVm())),
    'ENOTTY',
    'not an SEV guest',
  );
  t.is(
    s.code(() => s.send(s.guest(true))),
    'EPERM',
    'SEV-ES',
  );
});

test('LOCAL_RECEIVE: the target must be initialised (ENOTTY), not launched, without regions, not SEV-ES (EPERM)', (t) => {
  const s = setup(t);
  const token = s.send(s.launched());
  t.is(
    s.code(() => s.receive(s.newVm(), token)),
    'ENOTTY',
  );
  t.is(
    s.code(() => s.receive(s.launched(), token)),
    'EPERM',
    'launched (handle != 0)',
  );
  const withRegion = s.guest();
  s.host.ioctl(withRegion, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, s.region(0, 0x1000));
  t.is(
    s.code(() => s.receive(withRegion, token)),
    'EPERM',
    'regions',
  );
  t.is(
    s.code(() => s.receive(s.guest(true), token)),
    'EPERM',
    'SEV-ES',
  );
  t.is(
    s.code(() => s.receive(s.guest(), token ^ 1n)),
    'EFAULT',
    'unknown token',
  );
  t.true(s.receive(s.guest(), token) > 0);
  t.is(
    s.code(() => s.receive(s.guest(), token)),
    'EFAULT',
    'a token is valid once',
  );
});

test("ASID, handle, pages_locked and regions move; the target's own ASID is freed; the source dying afterwards leaves them", (t) => {
  const s = setup(t);
  const src = s.guest();
  s.host.ioctl(src, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, s.region(0, 0x4000));
  s.op(src, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  const before = s.snap().vms.find((v) => v.regions === 1)!;
  const token = s.send(src);
  const dst = s.guest();
  const dstAsid = s.snap().vms.find((v) => v.asid !== before.asid && v.active)!.asid;
  const handle = s.receive(dst, token);
  t.is(handle, before.handle);
  const after = s.snap().vms.filter((v) => v.asid === before.asid);
  t.is(after.length, 2, 'the source keeps its numbers but is gated; the target has them');
  const target = s.snap().vms.find((v) => v.token === 0n && v.asid === before.asid)!;
  t.like(target, { handle: before.handle, pagesLocked: 4, regions: 1 });
  t.deepEqual(s.snap().asidsReclaimable, [dstAsid], "the target's own ASID is freed");
  s.host.trace.clear();
  src.close();
  t.deepEqual(
    s.host.trace.entries.flatMap((e) => e.firmware),
    [],
    'no DEACTIVATE/DECOMMISSION: the context lives on',
  );
  t.true(s.snap().asidsHeld.includes(before.asid));
  t.is(s.snap().tokens, 0);
  // The target owns the regions now: exact unregistration works and unpins.
  s.host.ioctl(dst, ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION, s.region(0, 0x4000));
  t.is(s.snap().vms.find((v) => v.asid === before.asid)!.pagesLocked, 0);
  dst.close();
  t.true(s.snap().asidsReclaimable.includes(before.asid));
});

test('destroying the source before the receive invalidates the token and tears the context down', (t) => {
  const s = setup(t);
  const src = s.guest();
  s.host.ioctl(src, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, s.region(0, 0x2000));
  s.op(src, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  const token = s.send(src);
  s.host.trace.clear();
  src.close();
  t.deepEqual(
    s.host.trace.entries.flatMap((e) => e.firmware.map((f) => f.command)),
    ['DEACTIVATE', 'DECOMMISSION'],
  );
  t.is(
    s.code(() => s.receive(s.guest(), token)),
    'EFAULT',
  );
  t.is(s.snap().tokens, 0);
});

test('tokens are per host; in this profile INIT2 does not exist (22 is LOCAL_SEND) and there are no MOVE/COPY caps', async (t) => {
  const a = setup(t);
  const b = setup(t, new MockHost({ kernel: 'local-migration-2021' }));
  const token = a.send(a.launched());
  t.is(
    b.code(() => b.receive(b.guest(), token)),
    'EFAULT',
  );
  const cap = kvm_enable_cap.arg({ cap: 206, args: [BigInt(b.guest().fd), 0n, 0n, 0n] });
  t.is(
    b.code(() => b.host.ioctl(b.guest(), ioc.KVM_ENABLE_CAP, cap)),
    'EINVAL',
    'no MOVE cap in 2021',
  );
  // The library above: with the opt-in, localSend/localReceive; without it, init2() reaches LOCAL_SEND.
  const kvm = Kvm.open({ backend: a.host });
  t.teardown(() => kvm.close());
  const platform = SevPlatform.open(a.host);
  t.teardown(() => platform.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const c = new SevGuestCommands(vm, platform, { localMigration: { profile: 'local-migration-2021' } });
  await c.init();
  await c.launchStart({ policy: 0 });
  const tok = await c.localSend();
  const vm2 = kvm.createVm();
  t.teardown(() => vm2.close());
  const c2 = new SevGuestCommands(vm2, platform, { localMigration: { profile: 'local-migration-2021' } });
  await c2.init();
  const { handle } = await c2.localReceive(tok);
  t.true(handle > 0);
  const vm3 = kvm.createVm();
  t.teardown(() => vm3.close());
  const plain = new SevGuestCommands(vm3, platform);
  await t.throwsAsync(plain.init2(), { code: 'ENOTTY' }, 'id 22 is LOCAL_SEND here: not an SEV guest');
});

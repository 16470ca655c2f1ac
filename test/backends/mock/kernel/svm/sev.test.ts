/**
 * KVM_MEMORY_ENCRYPT_OP on the mock kernel at the raw ioctl level (arch/x86/kvm/svm/sev.c: sev_mem_enc_ioctl() and its handlers):
 * dispatch order, which errors copy the struct back and which echo the caller's `error`, length
 * queries, INIT/INIT2 checks, sev_fd handling, firmware statuses as EIO.
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd, VcpuRunHandle } from '../../../../../lib/backend/contract.js';
import { MockHost, type MockHostOptions } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM } from '../../../../../lib/uapi/constants.js';
import { ioctlStruct, type IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { SEV_RET } from '../../../../../lib/uapi/sev-status.js';
import {
  kvm_sev_attestation_report,
  kvm_sev_cmd,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
  kvm_sev_send_start,
  kvm_sev_send_update_data,
  kvm_sev_snp_launch_start,
} from '../../../../../lib/uapi/sev-structs.js';
import { kvm_enable_cap } from '../../../../../lib/uapi/kvm-structs.js';

/** A mock host with /dev/kvm, /dev/sev (where enabled) and a VM of `type` open; all closed at teardown. */
function setup(t: ExecutionContext, opts: MockHostOptions = {}, type = KVM_X86_DEFAULT_VM) {
  const host = new MockHost(opts);
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = opts.sev?.enabled === false ? undefined : host.open('/dev/sev');
  t.teardown(() => sev?.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, type);
  t.teardown(() => vm.close());
  return { host, kvm, sev, vm };
}

interface OpResult {
  r?: number;
  code?: string;
  cmd: IoctlStruct;
  error: number;
}

function op(host: MockHost, vm: BackendFd, id: number, data: IoctlStruct | null = null, error = 0, sevFd = 0xffffffff): OpResult {
  const cmd = kvm_sev_cmd.arg({ id, data, error, sev_fd: sevFd });
  try {
    const r = host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
    return { r, cmd, error: kvm_sev_cmd.decode(cmd.bytes).error };
  } catch (e) {
    const err = e as { code: string; errno: number; syscall: string; request: string };
    return { code: err.code, cmd, error: kvm_sev_cmd.decode(cmd.bytes).error };
  }
}

test('SEV disabled: ENOTTY for every command and for the NULL probe, /dev/sev absent', (t) => {
  const { host, vm } = setup(t, { sev: { enabled: false } });
  const e = t.throws(() => host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP));
  t.like(e, { code: 'ENOTTY', errno: -25, syscall: 'ioctl', request: 'KVM_MEMORY_ENCRYPT_OP' });
  const r = op(host, vm, KVM_SEV.INIT, null, 0x1234);
  t.is(r.code, 'ENOTTY');
  t.is(r.error, 0x1234, 'not copied back: the error passed in stays');
  t.like(
    t.throws(() => host.open('/dev/sev')),
    { code: 'ENOENT', syscall: 'open', path: '/dev/sev' },
  );
});

test('NULL argument probe answers 0 with SEV enabled', (t) => {
  const { host, vm } = setup(t);
  t.is(host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP), 0);
  t.is(host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, 0), 0);
});

test('unknown and unimplemented ids: EINVAL, struct not copied back', (t) => {
  const { host, vm } = setup(t);
  for (const id of [10, 14, 19, 23, 50, 99, 104, 1000]) {
    const r = op(host, vm, id, null, 0xabcd);
    t.is(r.code, 'EINVAL', `id ${id}`);
    t.is(r.error, 0xabcd, `id ${id}: error echoes the caller's`);
  }
});

test("handlers failing before the firmware echo the caller's error; firmware failures write the status", (t) => {
  const { host, vm, sev } = setup(t);
  // !sev_guest: ENOTTY from the handler, struct copied back unchanged.
  const r = op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0x77, sev!.fd);
  t.is(r.code, 'ENOTTY');
  t.is(r.error, 0x77);
  // RECEIVE_UPDATE_DATA on a non-SEV guest is EINVAL, not ENOTTY.
  t.is(op(host, vm, KVM_SEV.RECEIVE_UPDATE_DATA, kvm_sev_send_update_data.arg({})).code, 'EINVAL');
  t.is(op(host, vm, KVM_SEV.INIT).r, 0);
  // Firmware: LAUNCH_FINISH without LAUNCH_START → stored fd is 0 → EBADF, error untouched.
  const fin = op(host, vm, KVM_SEV.LAUNCH_FINISH, null, 0x55);
  t.is(fin.code, 'EBADF');
  t.is(fin.error, 0x55);
  const ls = op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0x99, sev!.fd);
  t.is(ls.r, 0);
  t.is(ls.error, 0, 'firmware success writes 0');
  // A firmware state error: LAUNCH_SECRET needs LSECRET; GUEST_STATUS works; LAUNCH_FINISH then DBG fine.
  const again = op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0, handle: 0x1000 }), 0, sev!.fd);
  t.is(again.code, 'EIO');
  t.not(again.error, 0);
});

test('LAUNCH_START: writes back the handle, uses cmd.sev_fd (EBADF for a non-/dev/sev fd)', (t) => {
  const { host, kvm, vm, sev } = setup(t);
  t.is(op(host, vm, KVM_SEV.INIT).r, 0);
  t.is(op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, kvm.fd).code, 'EBADF');
  t.is(op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, 999).code, 'EBADF');
  const data = kvm_sev_launch_start.arg({ policy: 0 });
  t.is(op(host, vm, KVM_SEV.LAUNCH_START, data, 0, sev!.fd).r, 0);
  t.true(kvm_sev_launch_start.decode(data.bytes).handle > 0);
  t.is(kvm_sev_launch_start.decode(data.bytes).dh_uaddr, 0n, 'pointer fields read back as 0');
  const st = kvm_sev_guest_status.arg({});
  t.is(op(host, vm, KVM_SEV.GUEST_STATUS, st).r, 0);
  t.deepEqual(kvm_sev_guest_status.decode(st.bytes), { handle: kvm_sev_launch_start.decode(data.bytes).handle, policy: 0, state: 1 });
  // Closing /dev/sev: the fd the VM recorded is gone, later firmware commands answer EBADF.
  sev!.close();
  t.is(op(host, vm, KVM_SEV.GUEST_STATUS, kvm_sev_guest_status.arg({})).code, 'EBADF');
});

test('blobs: zero length or more than 16 KiB is EINVAL', (t) => {
  const { host, vm, sev } = setup(t);
  op(host, vm, KVM_SEV.INIT);
  const big = new Uint8Array(0x4001);
  t.is(op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0, session_uaddr: big }), 0, sev!.fd).code, 'EINVAL');
  const lie = ioctlStruct(kvm_sev_launch_start.encode({ policy: 0, dh_len: 0 }), [{ offset: 8, target: new Uint8Array(8) }]);
  t.is(op(host, vm, KVM_SEV.LAUNCH_START, lie, 0, sev!.fd).code, 'EINVAL');
});

test('LAUNCH_MEASURE: len 0 is a length query (EIO, INVALID_LEN, len 48); success writes 48; >16K EINVAL', (t) => {
  const { host, vm, sev } = setup(t);
  op(host, vm, KVM_SEV.INIT);
  op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, sev!.fd);
  const q = kvm_sev_launch_measure.arg({});
  const r = op(host, vm, KVM_SEV.LAUNCH_MEASURE, q);
  t.is(r.code, 'EIO');
  t.is(r.error, SEV_RET.INVALID_LEN);
  t.is(kvm_sev_launch_measure.decode(q.bytes).len, 48);
  t.is(op(host, vm, KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(0x4001) })).code, 'EINVAL');
  // uaddr 0 with len ≠ 0: a query whose error leaves len alone.
  const q2 = kvm_sev_launch_measure.arg({ len: 64 });
  t.is(op(host, vm, KVM_SEV.LAUNCH_MEASURE, q2).code, 'EIO');
  t.is(kvm_sev_launch_measure.decode(q2.bytes).len, 64);
  const buf = new Uint8Array(64).fill(0xee);
  const m = kvm_sev_launch_measure.arg({ uaddr: buf });
  t.is(op(host, vm, KVM_SEV.LAUNCH_MEASURE, m).r, 0);
  t.is(kvm_sev_launch_measure.decode(m.bytes).len, 48);
  t.true(
    buf.subarray(48).every((b) => b === 0),
    'the kernel copies its zeroed buffer whole',
  );
  t.false(buf.subarray(0, 48).every((b) => b === 0));
});

test('GET_ATTESTATION_REPORT and SEND_START/SEND_UPDATE_DATA length queries write the lengths back', (t) => {
  const { host, vm, sev } = setup(t);
  op(host, vm, KVM_SEV.INIT);
  op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, sev!.fd);
  t.is(op(host, vm, KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(48) })).r, 0);
  t.is(op(host, vm, KVM_SEV.LAUNCH_FINISH).r, 0);
  const a = kvm_sev_attestation_report.arg({ mnonce: new Uint8Array(16) });
  const ra = op(host, vm, KVM_SEV.GET_ATTESTATION_REPORT, a);
  t.is(ra.code, 'EIO');
  t.is(ra.error, SEV_RET.INVALID_LEN);
  t.true(kvm_sev_attestation_report.decode(a.bytes).len > 0);
  const s = kvm_sev_send_start.arg({});
  const rs = op(host, vm, KVM_SEV.SEND_START, s);
  t.is(rs.error, SEV_RET.INVALID_LEN);
  t.true(kvm_sev_send_start.decode(s.bytes).session_len > 0);
  // Without a length query: missing PDH → EINVAL.
  t.is(op(host, vm, KVM_SEV.SEND_START, kvm_sev_send_start.arg({ session_len: 16 })).code, 'EINVAL');
  const u = kvm_sev_send_update_data.arg({});
  const ru = op(host, vm, KVM_SEV.SEND_UPDATE_DATA, u);
  t.is(ru.code, 'EIO');
  t.true(kvm_sev_send_update_data.decode(u.bytes).hdr_len > 0, 'hdr_len written back');
});

test('SEND/RECEIVE_UPDATE_DATA: a packet beyond one page is EINVAL', (t) => {
  const { host, vm, sev } = setup(t);
  const mem = host.mmapAnonymous(0x4000);
  t.teardown(() => mem.unmap());
  op(host, vm, KVM_SEV.INIT);
  op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, sev!.fd);
  const pkt = (offset: number, length: number) =>
    kvm_sev_send_update_data.arg({
      hdr_uaddr: new Uint8Array(52),
      trans_uaddr: new Uint8Array(length),
      guest_uaddr: { kind: 'mapping', mapping: mem, offset, length },
    });
  t.is(op(host, vm, KVM_SEV.SEND_UPDATE_DATA, pkt(0x800, 0x1000)).code, 'EINVAL');
  t.is(op(host, vm, KVM_SEV.SEND_UPDATE_DATA, pkt(0, 0x1001)).code, 'EINVAL');
  t.is(op(host, vm, KVM_SEV.RECEIVE_UPDATE_DATA, pkt(0xff0, 0x20)).code, 'EINVAL');
});

test('INIT: only on DEFAULT VMs; a second INIT is EINVAL; vCPUs first is EINVAL; ES_INIT needs SEV-ES', (t) => {
  const a = setup(t, {}, KVM_X86_SEV_VM);
  t.is(op(a.host, a.vm, KVM_SEV.INIT).code, 'EINVAL');
  const b = setup(t);
  const bv = b.host.ioctlFd(b.vm, ioc.KVM_CREATE_VCPU, 0);
  t.teardown(() => bv.close());
  t.is(op(b.host, b.vm, KVM_SEV.INIT).code, 'EINVAL');
  const c = setup(t);
  t.is(op(c.host, c.vm, KVM_SEV.INIT).r, 0);
  t.is(op(c.host, c.vm, KVM_SEV.INIT).code, 'EINVAL');
  const d = setup(t, { processor: 'naples' });
  t.is(op(d.host, d.vm, KVM_SEV.ES_INIT).code, 'ENOTTY');
  const e = setup(t, { sev: { es: false } });
  t.is(op(e.host, e.vm, KVM_SEV.ES_INIT).code, 'ENOTTY');
  t.is(op(e.host, e.vm, KVM_SEV.INIT).r, 0);
});

test('INIT2: need_init, flags, vmsa_features, ghcb_version rules, and only on SEV VM types', (t) => {
  const i2 = (host: MockHost, vm: BackendFd, v: Parameters<typeof kvm_sev_init.arg>[0]) =>
    op(host, vm, KVM_SEV.INIT2, kvm_sev_init.arg(v)).code;
  const d = setup(t);
  t.is(i2(d.host, d.vm, {}), 'EINVAL', 'DEFAULT VM');
  const s = setup(t, {}, KVM_X86_SEV_VM);
  t.is(i2(s.host, s.vm, { flags: 1 }), 'EINVAL');
  t.is(i2(s.host, s.vm, { vmsa_features: 1n << 5n }), 'EINVAL', 'SEV takes no vmsa_features');
  t.is(i2(s.host, s.vm, { ghcb_version: 1 }), 'EINVAL', 'SEV takes ghcb_version 0');
  t.is(i2(s.host, s.vm, {}), undefined);
  t.is(i2(s.host, s.vm, {}), 'EINVAL', 'a second INIT2');
  const es = setup(t, {}, KVM_X86_SEV_ES_VM);
  t.is(i2(es.host, es.vm, { ghcb_version: 3 }), 'EINVAL');
  t.is(i2(es.host, es.vm, { vmsa_features: 1n << 9n }), 'EINVAL', 'SECURE_TSC is SNP-only');
  t.is(i2(es.host, es.vm, { vmsa_features: 1n << 5n }), undefined, 'DEBUG_SWAP');
  const old = setup(t, { kernel: 'local-migration-2021' });
  const r = op(old.host, old.vm, KVM_SEV.INIT);
  t.is(r.r, 0);
  t.is(op(old.host, old.vm, KVM_SEV.INIT).code, 'EBUSY', 'the 2021 kernel answers a second INIT with EBUSY');
});

test('SNP guests: every id < 100 is EPERM (second INIT2, GUEST_STATUS, DBG); SNP_LAUNCH_START without SNP firmware is ENOTTY', (t) => {
  const { host, vm } = setup(t, { sev: { snp: true } }, KVM_X86_SNP_VM);
  t.is(op(host, vm, KVM_SEV.INIT2, kvm_sev_init.arg({})).r, 0);
  for (const id of [KVM_SEV.INIT2, KVM_SEV.GUEST_STATUS, KVM_SEV.DBG_DECRYPT, 10, 99]) {
    t.is(op(host, vm, id, null, 0x42).code, 'EPERM', `id ${id}`);
  }
  t.is(op(host, vm, KVM_SEV.SNP_LAUNCH_START, kvm_sev_snp_launch_start.arg({ policy: 1n << 17n, flags: 1 })).code, 'EINVAL');
  t.is(op(host, vm, KVM_SEV.SNP_LAUNCH_START, kvm_sev_snp_launch_start.arg({ policy: 0n })).code, 'EINVAL', 'RSVD_MBO');
  t.is(op(host, vm, KVM_SEV.SNP_LAUNCH_START, kvm_sev_snp_launch_start.arg({ policy: 1n << 17n })).code, 'ENOTTY');
  t.is(op(host, vm, KVM_SEV.SNP_LAUNCH_FINISH, null).code, 'EINVAL', 'no launch context');
  t.is(op(host, vm, KVM_SEV.SNP_ENABLE_REQ_CERTS).r, 0);
  const on612 = setup(t, { kernel: '6.12', sev: { snp: true } }, KVM_X86_SNP_VM);
  op(on612.host, on612.vm, KVM_SEV.INIT2, kvm_sev_init.arg({}));
  t.is(op(on612.host, on612.vm, KVM_SEV.SNP_ENABLE_REQ_CERTS).code, 'EINVAL', 'absent in 6.12');
  t.is(
    op(on612.host, on612.vm, KVM_SEV.SNP_LAUNCH_START, kvm_sev_snp_launch_start.arg({ policy: 1n << 17n })).code,
    'EINVAL',
    '6.12 needs SMT',
  );
});

test('KVM_CAP_VM_TYPES and VM creation by profile; KVM_RUN before INIT2 is EINVAL', (t) => {
  const { host, kvm } = setup(t);
  t.is(host.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, 235), 0b1101);
  t.like(
    t.throws(() => host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 4)),
    { code: 'EINVAL' },
  );
  t.like(
    t.throws(() => host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 32)),
    { code: 'EINVAL' },
  );
  const naples = new MockHost({ processor: 'naples' });
  const naplesKvm = naples.open('/dev/kvm');
  t.teardown(() => naplesKvm.close());
  t.is(naples.ioctl(naplesKvm, ioc.KVM_CHECK_EXTENSION, 235), 0b101);
  const old = setup(t, { kernel: 'local-migration-2021' });
  t.is(old.host.ioctl(old.kvm, ioc.KVM_CHECK_EXTENSION, 235), 0);
  t.is(old.host.ioctl(old.kvm, ioc.KVM_CHECK_EXTENSION, 206), 0);
  t.is(old.host.ioctl(old.kvm, ioc.KVM_CHECK_EXTENSION, 197), 0);
  t.like(
    t.throws(() => old.host.ioctlFd(old.kvm, ioc.KVM_CREATE_VM, 2)),
    { code: 'EINVAL' },
  );
  t.is(host.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, 206), 1);
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, KVM_X86_SEV_VM);
  t.teardown(() => vm.close());
  const vcpu = host.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
  t.teardown(() => vcpu.close());
  const runner = host.createRunner(vcpu, 12288);
  t.teardown(() => runner.close());
  t.like(
    t.throws(() => runner.runSync()),
    { code: 'EINVAL', request: 'KVM_RUN' },
  );
  const dvm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => dvm.close());
  const dv = host.ioctlFd(dvm, ioc.KVM_CREATE_VCPU, 0);
  t.teardown(() => dv.close());
  let r1: VcpuRunHandle | undefined;
  t.teardown(() => r1?.close());
  t.like(
    t.throws(() => (r1 = host.createRunner(dv, 12288)).runSync()),
    { code: 'ERR_KVM_SEV_MOCK_NO_EXECUTION' },
  );
  const r2 = host.createRunner(dv, 12288);
  t.teardown(() => r2.close());
  r2.kick();
  t.is(r2.runSync(), -4, 'a kick makes the next run return -EINTR');
});

test('ENABLE_CAP on the VM: flags must be 0; MOVE/COPY with a bad fd are EBADF', (t) => {
  const { host, kvm, vm } = setup(t);
  const cap = (c: number, arg0: bigint, flags = 0) =>
    host.ioctl(vm, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap: c, flags, args: [arg0, 0n, 0n, 0n] }));
  t.like(
    t.throws(() => cap(206, 1n, 1)),
    { code: 'EINVAL' },
  );
  t.like(
    t.throws(() => cap(206, 999n)),
    { code: 'EBADF' },
  );
  t.like(
    t.throws(() => cap(197, BigInt(kvm.fd))),
    { code: 'EBADF', request: 'KVM_ENABLE_CAP' },
  );
  t.like(
    t.throws(() => cap(206, BigInt(vm.fd))),
    { code: 'EINVAL' },
    'dst == src',
  );
  t.like(
    t.throws(() => cap(12345, 0n)),
    { code: 'EINVAL' },
  );
});

test("the firmware's status reaches userspace as EIO with error = status (LAUNCH_UPDATE_DATA on a bad length)", (t) => {
  const { host, vm, sev } = setup(t);
  const mem = host.mmapAnonymous(0x2000);
  t.teardown(() => mem.unmap());
  op(host, vm, KVM_SEV.INIT);
  op(host, vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }), 0, sev!.fd);
  const r = op(
    host,
    vm,
    KVM_SEV.LAUNCH_UPDATE_DATA,
    kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0, length: 15 } }),
  );
  t.is(r.code, 'EIO');
  t.is(r.error, SEV_RET.INVALID_LEN);
  const zero = op(host, vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({}), 0x31);
  t.is(zero.code, 'EINVAL', 'len 0');
  t.is(zero.error, 0x31);
  const unmapped = ioctlStruct(kvm_sev_launch_update_data.encode({ len: 16 }));
  t.is(op(host, vm, KVM_SEV.LAUNCH_UPDATE_DATA, unmapped).code, 'ENOMEM', 'an unmapped page: a short pin');
});

/**
 * The SEV calls against the REAL kernel through the native backend. On a host without SEV every
 * KVM_SEV command answers ENOTTY before the firmware (so `error` comes back as the 0 we passed),
 * REG/UNREG_REGION answer ENOTTY, KVM_ENABLE_CAP with caps 197/206 answers EINVAL, and /dev/sev is
 * absent (ENOENT). Those expectations hold only where the NULL-argument probe says SEV is off; on an
 * SEV host they are pending, and the SEV-host tests below run instead.
 */
import type { ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import type { Backend } from '../../lib/backend/contract.js';
import { KvmError } from '../../lib/backend/errors.js';
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { Vm } from '../../lib/kvm/vm.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_CAP, KVM_SEV, KVM_SEV_SNP_PAGE_TYPE, SNP_POLICY, sevCommandName } from '../../lib/uapi/constants.js';
import type { IoctlArg, IoctlStruct } from '../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../lib/uapi/ioctls.js';
import { kvm_enable_cap } from '../../lib/uapi/kvm-structs.js';
import { kvm_sev_cmd, kvm_sev_guest_status, sevCommandStruct } from '../../lib/uapi/sev-structs.js';
import { hwTest, kvmDevice, nativeAddon, sevDevice, type Requirement } from '../helpers/hw.js';

const kvmReq = kvmDevice();

/** The probe, run once: undefined where /dev/kvm is not usable. */
function probeSev(): boolean | undefined {
  if (!kvmReq.ok) return undefined;
  const kvm = Kvm.open({ backend: new NativeBackend() });
  try {
    const vm = kvm.createVm();
    try {
      return new SevGuestCommands(vm).isEnabled();
    } finally {
      vm.close();
    }
  } finally {
    kvm.close();
  }
}
const sevEnabled = probeSev();
const noSev: Requirement = !kvmReq.ok
  ? kvmReq
  : sevEnabled
    ? { ok: false, reason: 'SEV is enabled on this host: the no-SEV answers do not apply' }
    : { ok: true, reason: '' };
const withSev: Requirement = !kvmReq.ok
  ? kvmReq
  : sevEnabled
    ? { ok: true, reason: '' }
    : { ok: false, reason: 'SEV is not enabled on this host (the KVM_MEMORY_ENCRYPT_OP probe answered ENOTTY)' };
const noDevSev: Requirement = !nativeAddon().ok
  ? nativeAddon()
  : existsSync('/dev/sev')
    ? { ok: false, reason: '/dev/sev exists on this host: the ENOENT answer does not apply' }
    : { ok: true, reason: '' };

interface Call {
  sync: boolean;
  request: number;
  arg: IoctlArg;
}

/** The native backend, with every ioctl recorded (the struct bytes are the ones the kernel wrote back). */
function recordingBackend(): { backend: Backend; calls: Call[] } {
  const real = new NativeBackend();
  const calls: Call[] = [];
  const backend = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'ioctl') {
        return (fd: never, request: number, arg?: IoctlArg) => {
          calls.push({ sync: true, request, arg });
          return target.ioctl(fd, request, arg);
        };
      }
      if (prop === 'ioctlAsync') {
        return (fd: never, request: number, arg?: IoctlArg) => {
          calls.push({ sync: false, request, arg });
          return target.ioctlAsync(fd, request, arg);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as Backend;
  return { backend, calls };
}

interface Fixture {
  kvm: Kvm;
  vm: Vm;
  other: Vm;
  cmds: SevGuestCommands;
  calls: Call[];
  close(): void;
}

/** Also closed at teardown: a fixture that fails half-way through its own setup leaks nothing either. */
function fixture(t: ExecutionContext): Fixture {
  const { backend, calls } = recordingBackend();
  const kvm = Kvm.open({ backend });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const other = kvm.createVm();
  t.teardown(() => other.close());
  const cmds = new SevGuestCommands(vm);
  calls.length = 0;
  return {
    kvm,
    vm,
    other,
    cmds,
    calls,
    close() {
      other.close();
      vm.close();
      kvm.close();
    },
  };
}

const bytes = (n: number, fill = 0xa5) => new Uint8Array(n).fill(fill);

/** One typed call per KVM_SEV command id (each builds its own struct). */
const COMMANDS: readonly { id: number; call: (c: SevGuestCommands, vm: Vm) => Promise<unknown> }[] = [
  { id: KVM_SEV.INIT, call: (c) => c.init() },
  { id: KVM_SEV.ES_INIT, call: (c) => c.esInit() },
  { id: KVM_SEV.LAUNCH_START, call: (c) => c.launchStart({ policy: 0x1, dh: bytes(0x824), session: bytes(0x80) }) },
  { id: KVM_SEV.LAUNCH_UPDATE_DATA, call: (c, vm) => c.launchUpdateData(vm.memory[0]!.range(0n, 0x1000)) },
  { id: KVM_SEV.LAUNCH_UPDATE_VMSA, call: (c) => c.launchUpdateVmsa() },
  {
    id: KVM_SEV.LAUNCH_SECRET,
    call: (c, vm) => c.launchSecret({ header: bytes(52), guest: vm.memory[0]!.range(0x2000n, 64), trans: bytes(64) }),
  },
  { id: KVM_SEV.LAUNCH_MEASURE, call: (c) => c.launchMeasure() },
  { id: KVM_SEV.LAUNCH_FINISH, call: (c) => c.launchFinish() },
  { id: KVM_SEV.SEND_START, call: (c) => c.sendStart({ pdhCert: bytes(0x824), platCerts: bytes(3 * 0x824), amdCerts: bytes(0x440) }) },
  { id: KVM_SEV.SEND_UPDATE_DATA, call: (c, vm) => c.sendUpdateData(vm.memory[0]!.range(0x3000n, 0x1000)) },
  { id: KVM_SEV.SEND_UPDATE_VMSA, call: (c) => c.command(KVM_SEV.SEND_UPDATE_VMSA) },
  { id: KVM_SEV.SEND_FINISH, call: (c) => c.sendFinish() },
  { id: KVM_SEV.RECEIVE_START, call: (c) => c.receiveStart({ policy: 0x1, pdh: bytes(0x824), session: bytes(0x80) }) },
  {
    id: KVM_SEV.RECEIVE_UPDATE_DATA,
    call: (c, vm) => c.receiveUpdateData({ header: bytes(52), guest: vm.memory[0]!.range(0x4000n, 0x1000), trans: bytes(0x1000) }),
  },
  { id: KVM_SEV.RECEIVE_UPDATE_VMSA, call: (c) => c.command(KVM_SEV.RECEIVE_UPDATE_VMSA) },
  { id: KVM_SEV.RECEIVE_FINISH, call: (c) => c.receiveFinish() },
  { id: KVM_SEV.GUEST_STATUS, call: (c) => c.guestStatus() },
  { id: KVM_SEV.DBG_DECRYPT, call: (c, vm) => c.dbgDecrypt(vm.memory[0]!.range(0x5000n, 32), new Uint8Array(32)) },
  { id: KVM_SEV.DBG_ENCRYPT, call: (c, vm) => c.dbgEncrypt(bytes(32), vm.memory[0]!.range(0x5000n, 32)) },
  { id: KVM_SEV.CERT_EXPORT, call: (c) => c.command(KVM_SEV.CERT_EXPORT) },
  { id: KVM_SEV.GET_ATTESTATION_REPORT, call: (c) => c.getAttestationReport(bytes(16, 7)) },
  { id: KVM_SEV.SEND_CANCEL, call: (c) => c.sendCancel() },
  { id: KVM_SEV.INIT2, call: (c) => c.init2({ vmsaFeatures: 0n, flags: 0, ghcbVersion: 0 }) },
  { id: KVM_SEV.SNP_LAUNCH_START, call: (c) => c.snpLaunchStart({ policy: SNP_POLICY.RSVD_MBO | SNP_POLICY.SMT }) },
  {
    id: KVM_SEV.SNP_LAUNCH_UPDATE,
    call: (c, vm) => c.snpLaunchUpdate({ gfn_start: 0n, uaddr: vm.memory[0]!.range(0n, 0x1000), type: KVM_SEV_SNP_PAGE_TYPE.NORMAL }),
  },
  { id: KVM_SEV.SNP_LAUNCH_FINISH, call: (c) => c.snpLaunchFinish({}) },
  { id: KVM_SEV.SNP_ENABLE_REQ_CERTS, call: (c) => c.snpEnableReqCerts() },
];

function asKvmError(t: ExecutionContext, e: unknown): KvmError {
  t.true(e instanceof KvmError, `expected a KvmError, got ${String(e)}`);
  return e as KvmError;
}

/** The single KVM_MEMORY_ENCRYPT_OP the typed call issued (the probe's sync NULL call aside). */
function theCommand(t: ExecutionContext, calls: readonly Call[]): IoctlStruct {
  const ops = calls.filter((c) => c.request === ioc.KVM_MEMORY_ENCRYPT_OP && c.arg !== undefined);
  t.is(ops.length, 1, 'exactly one KVM_MEMORY_ENCRYPT_OP with a kvm_sev_cmd');
  t.false(ops[0]!.sync, 'firmware commands go through ioctlAsync');
  return ops[0]!.arg as IoctlStruct;
}

hwTest(noSev, 'the NULL-argument probe answers ENOTTY and isEnabled() is false', (t) => {
  const f = fixture(t);
  try {
    const e = t.throws(() => f.vm.memoryEncryptOp());
    t.is((e as KvmError).code, 'ENOTTY');
    t.false(f.cmds.isEnabled());
    t.deepEqual(
      f.calls.map((c) => [c.request, c.arg]),
      [
        [ioc.KVM_MEMORY_ENCRYPT_OP, undefined],
        [ioc.KVM_MEMORY_ENCRYPT_OP, undefined],
      ],
    );
  } finally {
    f.close();
  }
});

for (const { id, call } of COMMANDS) {
  const name = sevCommandName(id)!;
  hwTest(noSev, `KVM_SEV_${name} (${id}) answers ENOTTY with its struct, error 0 written back, sev and hint set`, async (t) => {
    const f = fixture(t);
    try {
      const e = asKvmError(t, await t.throwsAsync(call(f.cmds, f.vm)));
      t.is(e.code, 'ENOTTY');
      t.is(e.errno, -25);
      t.is(e.syscall, 'ioctl');
      t.is(e.request, 'KVM_MEMORY_ENCRYPT_OP');
      t.deepEqual(e.sev, { command: name, fwError: 0, fwErrorName: 'SUCCESS' });
      t.regex(e.hint ?? '', /^SEV is not enabled on this host/);
      t.regex(e.message, new RegExp(`^ENOTTY: .*KVM_MEMORY_ENCRYPT_OP \\[KVM_SEV_${name}, firmware status SUCCESS`));

      const cmd = theCommand(t, f.calls);
      const decoded = kvm_sev_cmd.decode(cmd.bytes);
      t.is(decoded.id, id);
      t.is(decoded.error, 0, 'the kernel left the error we passed (0): the firmware was never reached');
      t.is(decoded.data, 0n, 'pointer fields read back as 0');
      t.is(decoded.sev_fd, 0xffffffff, 'no /dev/sev was given: sev_fd is -1');
      const struct = sevCommandStruct(id);
      const data = cmd.fixups.find((x) => x.offset === kvm_sev_cmd.offsetOf('data'));
      if (struct) {
        t.truthy(data, `KVM_SEV_${name} carries its ${struct.name}`);
        t.is((data!.target as IoctlStruct).bytes.byteLength, struct.size, struct.name);
      } else {
        t.is(data, undefined, `KVM_SEV_${name} carries no data`);
      }
    } finally {
      f.close();
    }
  });
}

hwTest(noSev, 'ids KVM does not know (23, 99, 104) answer ENOTTY too: the SEV check comes first', async (t) => {
  const f = fixture(t);
  try {
    for (const id of [23, 99, 104]) {
      const e = asKvmError(t, await t.throwsAsync(f.cmds.command(id)));
      t.is(e.code, 'ENOTTY');
      t.deepEqual(e.sev, { command: String(id), fwError: 0, fwErrorName: 'SUCCESS' });
      t.regex(e.hint ?? '', /SEV is not enabled/);
    }
  } finally {
    f.close();
  }
});

hwTest(noSev, 'a non-zero error passed in comes back untouched: the kernel neither zeroes nor copies it (why we pass 0)', (t) => {
  const f = fixture(t);
  try {
    const cmd = kvm_sev_cmd.arg({ id: KVM_SEV.GUEST_STATUS, data: kvm_sev_guest_status.arg({}), error: 0x1234 });
    t.is((t.throws(() => f.vm.memoryEncryptOp(cmd)) as KvmError).code, 'ENOTTY');
    t.is(kvm_sev_cmd.decode(cmd.bytes).error, 0x1234);
  } finally {
    f.close();
  }
});

hwTest(noSev, 'REG_REGION and UNREG_REGION answer ENOTTY, with sev (no firmware) and hint', (t) => {
  const f = fixture(t);
  try {
    const range = f.vm.memory[0]!.range(0n, 0x2000);
    const reg = asKvmError(
      t,
      t.throws(() => f.cmds.registerRegion(range)),
    );
    t.is(reg.code, 'ENOTTY');
    t.is(reg.request, 'KVM_MEMORY_ENCRYPT_REG_REGION');
    t.deepEqual(reg.sev, { command: 'REG_REGION', fwError: -1, fwErrorName: 'NO_FW_CALL' });
    t.regex(reg.hint ?? '', /^SEV is not enabled on this host/);
    const unreg = asKvmError(
      t,
      t.throws(() => f.cmds.unregisterRegion(range)),
    );
    t.is(unreg.code, 'ENOTTY');
    t.is(unreg.request, 'KVM_MEMORY_ENCRYPT_UNREG_REGION');
    t.deepEqual(unreg.sev, { command: 'UNREG_REGION', fwError: -1, fwErrorName: 'NO_FW_CALL' });
    t.regex(unreg.hint ?? '', /^SEV is not enabled on this host/);
  } finally {
    f.close();
  }
});

for (const [method, cap, command] of [
  ['moveEncContextFrom', KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, 'VM_MOVE_ENC_CONTEXT_FROM'],
  ['copyEncContextFrom', KVM_CAP.VM_COPY_ENC_CONTEXT_FROM, 'VM_COPY_ENC_CONTEXT_FROM'],
] as const) {
  hwTest(noSev, `${method}: KVM_ENABLE_CAP(${cap}, args[0] = the source VM fd) answers EINVAL, with a hint`, (t) => {
    const f = fixture(t);
    try {
      const e = asKvmError(
        t,
        t.throws(() => f.cmds[method](f.other)),
      );
      t.is(e.code, 'EINVAL');
      t.is(e.request, 'KVM_ENABLE_CAP');
      t.deepEqual(e.sev, { command, fwError: -1, fwErrorName: 'NO_FW_CALL' });
      t.regex(e.hint ?? '', /SEV is not enabled on this host, so KVM cannot move or share an encryption context/);
      const caps = f.calls.filter((c) => c.request === ioc.KVM_ENABLE_CAP);
      t.is(caps.length, 1);
      const v = kvm_enable_cap.decode((caps[0]!.arg as IoctlStruct).bytes);
      t.is(v.cap, cap);
      t.is(v.flags, 0);
      t.deepEqual(v.args, [BigInt(f.other.fd.fd), 0n, 0n, 0n]);
    } finally {
      f.close();
    }
  });
}

hwTest(
  kvmReq,
  'local migration, opted in on a kernel without SEV VM types: the addon lays out 22/23 as LOCAL_SEND/RECEIVE and the kernel answers',
  async (t) => {
    const f = fixture(t);
    try {
      const lm = new SevGuestCommands(f.vm, null, { localMigration: { send: 22, receive: 23 } });
      const send = await t.throwsAsync(lm.localSend());
      t.like(send, { code: 'ENOTTY', request: 'KVM_MEMORY_ENCRYPT_OP' }, 'no SEV here: the kernel, not the addon, refuses');
      const recv = await t.throwsAsync(lm.localReceive(0x1234n));
      t.like(recv, { code: 'ENOTTY' });
      const init2 = await t.throwsAsync(lm.init2());
      t.is((init2 as { code?: string }).code, 'ERR_KVM_SEV_LOCAL_MIGRATION_COLLISION');
      t.is(
        f.calls.filter((c) => c.request === ioc.KVM_MEMORY_ENCRYPT_OP && c.arg !== undefined).length,
        2,
        'the two attempts reached the kernel (besides the NULL probes of the hints); INIT2 never left JS',
      );
    } finally {
      f.close();
    }
  },
);

hwTest(noDevSev, 'opening /dev/sev answers ENOENT with a hint', (t) => {
  const e = asKvmError(
    t,
    t.throws(() => SevPlatform.open(new NativeBackend())),
  );
  t.is(e.code, 'ENOENT');
  t.is(e.syscall, 'open');
  t.is(e.path, '/dev/sev');
  t.deepEqual(e.sev, { command: 'OPEN', fwError: -1, fwErrorName: 'NO_FW_CALL' });
  t.regex(e.hint ?? '', /no \/dev\/sev: this host has no SEV firmware/);
});

// ------------------------------------------------------------------------------------------------
// SEV hosts only (pending elsewhere): answers that consume no ASID and change no platform state.

hwTest(withSev, 'on an SEV host, a VM without INIT answers ENOTTY with "run INIT first"', async (t) => {
  const f = fixture(t);
  try {
    t.true(f.cmds.isEnabled());
    const e = asKvmError(t, await t.throwsAsync(f.cmds.launchStart({ policy: 1 })));
    t.is(e.code, 'ENOTTY');
    t.regex(e.hint ?? '', /^This VM is not an SEV guest yet: run INIT first/);
    const r = asKvmError(
      t,
      await t.throwsAsync(f.cmds.receiveUpdateData({ header: bytes(52), guest: f.vm.memory[0]!.range(0n, 16), trans: bytes(16) })),
    );
    t.is(r.code, 'EINVAL', 'RECEIVE_UPDATE_DATA answers EINVAL, not ENOTTY, on a non-SEV VM');
  } finally {
    f.close();
  }
});

hwTest(withSev, 'on an SEV host, INIT2 on a KVM_X86_DEFAULT_VM answers EINVAL naming the VM type', async (t) => {
  const f = fixture(t);
  try {
    const e = asKvmError(t, await t.throwsAsync(f.cmds.init2()));
    t.is(e.code, 'EINVAL');
    t.deepEqual(e.sev, { command: 'INIT2', fwError: 0, fwErrorName: 'SUCCESS' });
    t.regex(e.hint ?? '', /this one is KVM_X86_DEFAULT_VM/);
  } finally {
    f.close();
  }
});

const sevReq = sevDevice();

hwTest(sevReq, '/dev/sev: PLATFORM_STATUS decodes, and read-only opens get EPERM with a hint for PEK_GEN', async (t) => {
  const b = new NativeBackend();
  const sev = SevPlatform.open(b, { write: false });
  try {
    t.false(sev.writable);
    const st = await sev.platformStatus();
    t.true(st.state >= 0 && st.state <= 2);
    t.is(st.stateName, ['UNINIT', 'INIT', 'WORKING'][st.state]!);
    t.is(st.owner, (st.flags & 1) !== 0);
    t.is(st.configEs, (st.flags & 0x100) !== 0);
    const e = asKvmError(t, await t.throwsAsync(sev.pekGen()));
    t.is(e.code, 'EPERM');
    t.is(e.sev?.command, 'PEK_GEN');
    t.regex(e.hint ?? '', /opened read-only: reopen it writable/);
  } finally {
    sev.close();
  }
});

hwTest(
  sevReq,
  '/dev/sev: PDH_CERT_EXPORT and PEK_CSR (length queries first) return SEV certificates; GET_ID gives 2×64 bytes',
  async (t) => {
    const sev = SevPlatform.open(new NativeBackend());
    try {
      const { pdh, certChain } = await sev.pdhCertExport();
      t.is(pdh.byteLength, 0x824);
      t.is(certChain.byteLength, 3 * 0x824);
      const csr = await sev.pekCsr();
      t.is(csr.byteLength, 0x824);
      const id = await sev.getId();
      t.is(id.socket1.byteLength, 64);
      t.is(id.socket2.byteLength, 64);
    } finally {
      sev.close();
    }
  },
);

/**
 * Bad input to every public method of SevGuestCommands and SevPlatform is refused with a typed error
 * before any ioctl: the fake backend below fails the test if anything reaches it. (Methods without
 * parameters, such as init() or launchFinish(), have no input to refuse.)
 *
 * A second part scripts kernel answers through the same fake, to check the hints and the length-query
 * logic on answers a host without SEV cannot give (EIO with firmware statuses, ENOMEM, EBUSY, EPERM…).
 */
import test, { type ExecutionContext } from 'ava';
import type { Backend, BackendFd, FdKind } from '../../lib/backend/contract.js';
import { KvmError, errnoError } from '../../lib/backend/errors.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { Vm } from '../../lib/kvm/vm.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_CAP, KVM_SEV, KVM_X86_SEV_VM, SEV_CMD } from '../../lib/uapi/constants.js';
import { isIoctlStruct, mappingRange, type IoctlArg, type IoctlStruct, type MappingHandle } from '../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../lib/uapi/ioctls.js';
import { sev_issue_cmd, sev_user_data_pdh_cert_export, sev_user_data_pek_csr, sev_user_data_status } from '../../lib/uapi/psp-structs.js';
import {
  kvm_sev_attestation_report,
  kvm_sev_cmd,
  kvm_sev_guest_status,
  kvm_sev_launch_measure,
  kvm_sev_send_start,
} from '../../lib/uapi/sev-structs.js';
import { SevCommandTable } from '../../lib/uapi/sev-command-table.js';
import { SEV_RET } from '../../lib/uapi/sev-status.js';

// ------------------------------------------------------------------------------------------------
// The fake backend

type Answer = (request: number, arg: IoctlArg) => number;

function fakeFd(kind: FdKind, fd: number): BackendFd {
  let closed = false;
  return {
    get kind() {
      return closed ? 'closed' : kind;
    },
    get fd() {
      return closed ? -1 : fd;
    },
    get closed() {
      return closed;
    },
    writable: true,
    close() {
      closed = true;
    },
  };
}

interface Fake {
  backend: Backend;
  calls: { method: string; request?: number; arg?: IoctlArg }[];
  /** Until armed, open('/dev/kvm') and KVM_CREATE_VM work (to build a Vm); after, every call fails the test. */
  arm(): void;
  /** Instead of failing, answer ioctls with this function (a scripted kernel). */
  script(answer: Answer): void;
}

function fakeBackend(t: ExecutionContext): Fake {
  let armed = false;
  let answer: Answer | undefined;
  let nextFd = 10;
  const calls: Fake['calls'] = [];
  const tables = new WeakMap<BackendFd, SevCommandTable>(); // per VM fd, as the native backend keeps them
  const refuse = (method: string, request?: number, arg?: IoctlArg): never => {
    calls.push({ method, request, arg });
    t.fail(`${method}${request !== undefined ? ` 0x${(request >>> 0).toString(16)}` : ''} reached the backend`);
    throw new Error(`fake backend: ${method} must not be called`);
  };
  const ioctl = (method: string, request: number, arg?: IoctlArg): number => {
    if (answer) {
      calls.push({ method, request, arg });
      return answer(request, arg);
    }
    return refuse(method, request, arg);
  };
  const backend: Backend = {
    name: 'mock',
    // Host facts are not what these tests are about: reading one fails the test like any other call,
    // except RLIMIT_MEMLOCK, which an ENOMEM hint quotes (from the backend's view of its host).
    system: {
      kvmAmdParam: () => refuse('system.kvmAmdParam'),
      kvmModules: () => refuse('system.kvmModules'),
      memlockLimit: () => 8n << 20n,
      capIpcLock: () => refuse('system.capIpcLock'),
      device: () => refuse('system.device'),
      cpuFlags: () => refuse('system.cpuFlags'),
      cpuInfo: () => refuse('system.cpuInfo'),
      kernelRelease: () => refuse('system.kernelRelease'),
    },
    open(path) {
      if (armed) return refuse('open');
      return fakeFd(path === '/dev/kvm' ? 'kvm' : 'sev', nextFd++);
    },
    ioctl: (_fd, request, arg) => ioctl('ioctl', request, arg),
    ioctlAsync: async (_fd, request, arg) => ioctl('ioctlAsync', request, arg),
    ioctlBatch: (batch) => batch.map((c) => ioctl('ioctl', c.request, c.arg)),
    ioctlFd(_fd, request, arg) {
      if (!armed && request === ioc.KVM_CREATE_VM) return fakeFd('vm', nextFd++);
      return refuse('ioctlFd', request, arg);
    },
    sevCommandTable: (vm) => tables.get(vm) ?? SevCommandTable.UPSTREAM,
    setSevCommandTable: (vm, table) => void tables.set(vm, table),
    mmapAnonymous: () => refuse('mmapAnonymous'),
    memfdCreate: () => refuse('memfdCreate'),
    mmapShared: () => refuse('mmapShared'),
    createRunner: () => refuse('createRunner'),
    eventfd: () => refuse('eventfd'),
    eventfdWrite: () => refuse('eventfdWrite'),
    eventfdRead: () => refuse('eventfdRead'),
    eventfdWait: async () => refuse('eventfdWait'),
    eventfdCancel: () => refuse('eventfdCancel'),
    pread: () => refuse('pread'),
    socketPair: () => refuse('socketPair'),
    unixListen: () => refuse('unixListen'),
    unixConnect: () => refuse('unixConnect'),
    unixAccept: async () => refuse('unixAccept'),
    sendFds: () => refuse('sendFds'),
    recvFds: async () => refuse('recvFds'),
  };
  return {
    backend,
    calls,
    arm() {
      armed = true;
    },
    script(a) {
      armed = true;
      answer = a;
    },
  };
}

function mapping(size = 0x10000, closed = false): MappingHandle {
  return { size, closed };
}

interface Setup {
  fake: Fake;
  kvm: Kvm;
  vm: Vm;
  other: Vm;
  sevFd: BackendFd;
  mem: MappingHandle;
  cmds: SevGuestCommands;
  platform: SevPlatform;
}

function setup(t: ExecutionContext, vmType = 0): Setup {
  const fake = fakeBackend(t);
  const kvm = Kvm.open({ backend: fake.backend });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm(vmType);
  t.teardown(() => vm.close());
  const other = kvm.createVm();
  t.teardown(() => other.close());
  const sevFd = fake.backend.open('/dev/sev');
  t.teardown(() => sevFd.close());
  const platform = new SevPlatform(fake.backend, sevFd);
  const cmds = new SevGuestCommands(vm, platform);
  fake.arm();
  return { fake, kvm, vm, other, sevFd, mem: mapping(), cmds, platform };
}

type Code = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE' | `ERR_KVM_SEV_${string}`;

/** `f` throws or rejects with `code` (TypeError for the two TYPE/VALUE codes, RangeError for OUT_OF_RANGE). */
async function refused(t: ExecutionContext, code: Code, f: () => unknown, what: string): Promise<void> {
  let err: unknown;
  try {
    await f();
  } catch (e) {
    err = e;
  }
  const e = err as (Error & { code?: string }) | undefined;
  if (!t.truthy(e, `${what}: expected ${code}, nothing was thrown`)) return;
  t.is(e.code, code, `${what}: ${e.message}`);
  if (code === 'ERR_OUT_OF_RANGE') t.true(e instanceof RangeError, `${what}: a RangeError`);
  else if (code.startsWith('ERR_INVALID_ARG')) t.true(e instanceof TypeError, `${what}: a TypeError`);
  t.false(e instanceof KvmError, `${what}: not a kernel error`);
}

const b = (n: number) => new Uint8Array(n).fill(1);

// ------------------------------------------------------------------------------------------------
// Bad input

test('constructors refuse a non-Vm, a non-/dev/sev fd, a foreign platform and bad options', async (t) => {
  const s = setup(t);
  const other = fakeBackend(t);
  const foreignFd = other.backend.open('/dev/sev');
  t.teardown(() => foreignFd.close());
  const foreign = new SevPlatform(other.backend, foreignFd);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => new SevGuestCommands({} as Vm), 'vm {}');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => new SevGuestCommands(s.vm, 'x' as never), 'sev string');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => new SevGuestCommands(s.vm, s.vm.fd), 'sev = a VM fd');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => new SevGuestCommands(s.vm, foreign), 'platform of another backend');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => new SevGuestCommands(s.vm, null, 5 as never), 'options 5');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => new SevGuestCommands(s.vm, null, { localMigration: 22 as never }), 'localMigration 22');
  await refused(
    t,
    'ERR_INVALID_ARG_VALUE',
    () => new SevGuestCommands(s.vm, null, { localMigration: { send: 22, receive: 22 } }),
    'send = receive',
  );
  await refused(t, 'ERR_OUT_OF_RANGE', () => new SevGuestCommands(s.vm, null, { localMigration: { send: -1, receive: 23 } }), 'send -1');
  await refused(
    t,
    'ERR_INVALID_ARG_VALUE',
    () => new SevGuestCommands(s.vm, null, { localMigration: { profile: 'x' } as never }),
    'unknown profile',
  );
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => new SevPlatform(null as never, s.sevFd), 'platform backend null');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => new SevPlatform(s.fake.backend, s.vm.fd), 'platform on a VM fd');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => SevPlatform.open(null as never), 'open(null)');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => SevPlatform.open(s.fake.backend, { write: 'yes' as never }), 'write: "yes"');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => SevPlatform.open(s.fake.backend, 1 as never), 'options 1');
  t.deepEqual(s.fake.calls, []);
});

test('init2: options, vmsaFeatures, flags and ghcbVersion are checked', async (t) => {
  const { cmds, fake } = setup(t, KVM_X86_SEV_VM);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.init2(null as never), 'null');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.init2({ vmsaFeatures: '1' as never }), 'vmsaFeatures string');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.init2({ vmsaFeatures: -1n }), 'vmsaFeatures -1n');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.init2({ vmsaFeatures: 1n << 64n }), 'vmsaFeatures 2^64');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.init2({ flags: 1.5 }), 'flags 1.5');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.init2({ flags: true as never }), 'flags true');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.init2({ ghcbVersion: 0x10000 }), 'ghcbVersion 0x10000');
  t.deepEqual(fake.calls, []);
});

test('launchStart / receiveStart: policy, handle and blobs are checked', async (t) => {
  const { cmds, fake } = setup(t);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchStart(undefined as never), 'launchStart()');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchStart({} as never), 'no policy');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.launchStart({ policy: 2 ** 32 }), 'policy 2^32');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.launchStart({ policy: 1, handle: -1 }), 'handle -1');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchStart({ policy: 1, dh: 'cert' as never }), 'dh string');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.launchStart({ policy: 1, dh: new Uint8Array(0) }), 'dh empty');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.launchStart({ policy: 1, dh: b(0x4001) }), 'dh > 16 KiB');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchStart({ policy: 1, session: [1, 2] as never }), 'session array');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.receiveStart({ policy: 1, session: b(128) } as never), 'receiveStart no pdh');
  await refused(
    t,
    'ERR_INVALID_ARG_VALUE',
    () => cmds.receiveStart({ policy: 1, pdh: b(0x824), session: new Uint8Array(0) }),
    'session empty',
  );
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.receiveStart({ pdh: b(0x824), session: b(128) } as never), 'receiveStart no policy');
  await refused(
    t,
    'ERR_OUT_OF_RANGE',
    () => cmds.receiveStart({ policy: 1, handle: 2 ** 32, pdh: b(1), session: b(1) }),
    'receiveStart handle 2^32',
  );
  t.deepEqual(fake.calls, []);
});

test('guest-memory arguments must be open, in-bounds, non-empty MappingRanges', async (t) => {
  const { cmds, fake, mem } = setup(t);
  const closed = mappingRange(mapping(0x1000, true), 0, 0x1000);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchUpdateData(b(16) as never), 'a Uint8Array');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.launchUpdateData(mappingRange(mem, 0, 0)), 'empty');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.launchUpdateData(closed), 'unmapped');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.launchUpdateData(mappingRange(mem, 0xf000, 0x2000)), 'past the end');
  await refused(
    t,
    'ERR_OUT_OF_RANGE',
    () => cmds.launchUpdateData({ kind: 'mapping', mapping: mem, offset: -16, length: 16 }),
    'negative offset',
  );
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.registerRegion({} as never), 'registerRegion {}');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.registerRegion(mappingRange(mem, 0, 0)), 'registerRegion empty');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.unregisterRegion(null as never), 'unregisterRegion null');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.unregisterRegion(closed), 'unregisterRegion unmapped');
  t.deepEqual(fake.calls, []);
});

test('launchSecret / receiveUpdateData / sendUpdateData: packets and one-page guest ranges', async (t) => {
  const { cmds, fake, mem } = setup(t);
  const g = mappingRange(mem, 0x1000, 64);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchSecret(null as never), 'launchSecret(null)');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchSecret({ guest: g, trans: b(64) } as never), 'no header');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.launchSecret({ header: b(52), guest: b(64) as never, trans: b(64) }), 'guest bytes');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.launchSecret({ header: b(52), guest: g, trans: new Uint8Array(0) }), 'trans empty');
  await refused(
    t,
    'ERR_OUT_OF_RANGE',
    () => cmds.receiveUpdateData({ header: b(52), guest: mappingRange(mem, 0, 0x1001), trans: b(16) }),
    'guest > 4096',
  );
  await refused(
    t,
    'ERR_INVALID_ARG_VALUE',
    () => cmds.receiveUpdateData({ header: b(52), guest: mappingRange(mem, 0xff0, 32), trans: b(32) }),
    'guest crosses a page',
  );
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.receiveUpdateData({ header: 'h' as never, guest: g, trans: b(64) }), 'header string');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.sendUpdateData(mappingRange(mem, 0, 0x2000)), 'send > 4096');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.sendUpdateData(mappingRange(mem, 0x1800, 0x1000)), 'send crosses a page');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.sendUpdateData(undefined as never), 'sendUpdateData()');
  t.deepEqual(fake.calls, []);
});

test('sendStart: the three certificates are required, policy is a u32', async (t) => {
  const { cmds, fake } = setup(t);
  const ok = { pdhCert: b(0x824), platCerts: b(3 * 0x824), amdCerts: b(0x440) };
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.sendStart(7 as never), 'sendStart(7)');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.sendStart({ ...ok, pdhCert: undefined } as never), 'no pdhCert');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.sendStart({ ...ok, platCerts: null } as never), 'platCerts null');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.sendStart({ ...ok, amdCerts: b(0x4001) }), 'amdCerts > 16 KiB');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.sendStart({ ...ok, policy: -1 }), 'policy -1');
  t.deepEqual(fake.calls, []);
});

test('dbgDecrypt / dbgEncrypt / getAttestationReport: buffers, ranges, sizes and the 16-byte mnonce', async (t) => {
  const { cmds, fake, mem } = setup(t);
  const r = mappingRange(mem, 0, 64);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.dbgDecrypt(b(64) as never, b(64)), 'decrypt src bytes');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.dbgDecrypt(r, new ArrayBuffer(64) as never), 'decrypt dst ArrayBuffer');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.dbgDecrypt(r, b(32)), 'decrypt dst too short');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.dbgDecrypt(r, new Uint8Array(0)), 'decrypt dst empty');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.dbgEncrypt(r as never, r), 'encrypt src range');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.dbgEncrypt(b(128), r), 'encrypt dst too short');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.dbgEncrypt(b(64), b(64) as never), 'encrypt dst bytes');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.getAttestationReport(b(15)), 'mnonce 15 bytes');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.getAttestationReport(b(17)), 'mnonce 17 bytes');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.getAttestationReport('0123456789abcdef' as never), 'mnonce string');
  t.deepEqual(fake.calls, []);
});

test('SNP calls: the struct codec and the uaddr range are checked', async (t) => {
  const { cmds, fake, mem } = setup(t);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.snpLaunchStart(null as never), 'start null');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.snpLaunchStart({ policy: 'x' as never }), 'start policy string');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.snpLaunchStart({ polcy: 1n } as never), 'start unknown field');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds.snpLaunchStart({ gosvw: b(15) }), 'gosvw 15 bytes');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.snpLaunchUpdate({ uaddr: b(4096) }), 'update uaddr bytes');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.snpLaunchUpdate({ uaddr: mappingRange(mem, 0, 4096), type: 300 }), 'update type 300');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.snpLaunchFinish(5 as never), 'finish 5');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.snpLaunchFinish({ id_block_uaddr: b(95) }), 'id block 95 bytes');
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.snpLaunchFinish({ id_auth_uaddr: b(4095) }), 'id auth 4095 bytes');
  t.deepEqual(fake.calls, []);
});

test('local migration: off unless opted in (naming INIT2), then the token is a non-zero u64 and INIT2 is refused', async (t) => {
  const { cmds, fake, vm, other } = setup(t);
  for (const f of [() => cmds.localSend(), () => cmds.localReceive(5n)]) {
    let err: (Error & { code?: string }) | undefined;
    try {
      await f();
    } catch (e) {
      err = e as Error & { code?: string };
    }
    t.is(err?.code, 'ERR_KVM_SEV_NO_LOCAL_MIGRATION');
    t.regex(err?.message ?? '', /22 is KVM_SEV_INIT2 upstream/);
    t.regex(err?.message ?? '', /localMigration: \{ send: 22, receive: 23 \}/);
  }
  // Opting in asks the kernel for its VM types (a kernel with SEV VM types has INIT2 at 22): this
  // one offers only the default type, as the 2021 kernel did.
  fake.script((request, arg) =>
    request === ioc.KVM_CHECK_EXTENSION && arg === KVM_CAP.VM_TYPES ? 1 : t.fail(`0x${request.toString(16)} reached the kernel`),
  );
  const lm = new SevGuestCommands(vm, null, { localMigration: { send: 22, receive: 23 } });
  t.deepEqual({ ...lm.localMigration }, { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 });
  const profile = new SevGuestCommands(vm, null, { localMigration: { profile: 'local-migration-2021' } });
  t.deepEqual({ ...profile.localMigration }, { LOCAL_SEND: 22, LOCAL_RECEIVE: 23 });
  t.is(lm.commands, SevCommandTable.LOCAL_MIGRATION_2021);
  t.is(fake.backend.sevCommandTable(vm.fd), SevCommandTable.LOCAL_MIGRATION_2021, 'the backend was told, for this VM');
  t.is(fake.backend.sevCommandTable(other.fd), SevCommandTable.UPSTREAM, 'another VM keeps the upstream ids');
  await refused(t, 'ERR_OUT_OF_RANGE', () => lm.localReceive(0n), 'token 0n');
  await refused(t, 'ERR_OUT_OF_RANGE', () => lm.localReceive(1n << 64n), 'token 2^64');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => lm.localReceive(5 as never), 'token number');
  await refused(t, 'ERR_KVM_SEV_LOCAL_MIGRATION_COLLISION', () => lm.init2(), 'INIT2 = LOCAL_SEND');
  t.deepEqual(
    fake.calls.map((c) => c.request),
    [ioc.KVM_CHECK_EXTENSION, ioc.KVM_CHECK_EXTENSION],
    'only the two VM-type queries',
  );
  // A kernel that offers SEV VM types has INIT2 at 22: the opt-in is refused, with the reason.
  fake.script((request, arg) =>
    request === ioc.KVM_CHECK_EXTENSION && arg === KVM_CAP.VM_TYPES ? 0b1101 : t.fail(`0x${request.toString(16)} reached the kernel`),
  );
  const e = t.throws(() => new SevGuestCommands(vm, null, { localMigration: { profile: 'local-migration-2021' } }));
  t.is((e as { code?: string }).code, 'ERR_KVM_SEV_LOCAL_MIGRATION_COLLISION');
  t.regex(e.message, /id 22.*moveEncContextFrom/s);
});

test('move/copy: the peer must be another open Vm of the same backend', async (t) => {
  const { cmds, fake, vm, other } = setup(t);
  const elsewhere = setup(t).vm;
  const closed = new Vm(vm.kvm, fakeFd('vm', 99), 0);
  closed.fd.close();
  for (const m of ['moveEncContextFrom', 'copyEncContextFrom'] as const) {
    await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds[m](other.fd as never), `${m}(fd)`);
    await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds[m](vm), `${m}(itself)`);
    await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds[m](closed), `${m}(closed)`);
    await refused(t, 'ERR_INVALID_ARG_VALUE', () => cmds[m](elsewhere), `${m}(other backend)`);
  }
  t.deepEqual(fake.calls, []);
});

test('command(): the id is a u32 and data an IoctlStruct; a closed /dev/sev fd is refused for LAUNCH_START', async (t) => {
  const { cmds, fake, sevFd } = setup(t);
  await refused(t, 'ERR_OUT_OF_RANGE', () => cmds.command(-1), 'id -1');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.command('2' as never), "id '2'");
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => cmds.command(KVM_SEV.GUEST_STATUS, b(12) as never), 'data bytes');
  await refused(
    t,
    'ERR_OUT_OF_RANGE',
    () => cmds.command(KVM_SEV.GUEST_STATUS, { kind: 'struct', bytes: b(4), fixups: [] }),
    'data too short',
  );
  sevFd.close();
  await refused(t, 'ERR_KVM_SEV_CLOSED', () => cmds.launchStart({ policy: 1 }), 'closed /dev/sev');
  await refused(t, 'ERR_KVM_SEV_CLOSED', () => cmds.receiveStart({ policy: 1, pdh: b(1), session: b(1) }), 'closed /dev/sev');
  t.deepEqual(fake.calls, []);
});

test('SevPlatform: certificates, the VLEK hashstick, the SNP config, and a closed fd', async (t) => {
  const { platform, fake } = setup(t);
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => platform.pekCertImport('pek' as never, b(0x824)), 'pek string');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => platform.pekCertImport(b(0x824), new Uint8Array(0)), 'oca empty');
  await refused(t, 'ERR_OUT_OF_RANGE', () => platform.pekCertImport(b(0x4001), b(0x824)), 'pek > 16 KiB');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => platform.snpVlekLoad(b(431)), 'hashstick 431 bytes');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => platform.snpVlekLoad(null as never), 'hashstick null');
  await refused(t, 'ERR_INVALID_ARG_TYPE', () => platform.snpSetConfig(null as never), 'config null');
  await refused(t, 'ERR_INVALID_ARG_VALUE', () => platform.snpSetConfig({ tcb: 1n } as never), 'config unknown field');
  await refused(t, 'ERR_OUT_OF_RANGE', () => platform.snpSetConfig({ reported_tcb: -1n }), 'reported_tcb -1n');
  platform.close();
  t.true(platform.closed);
  await refused(t, 'ERR_KVM_SEV_CLOSED', () => platform.platformStatus(), 'closed platform');
  t.deepEqual(fake.calls, []);
});

// ------------------------------------------------------------------------------------------------
// Scripted kernel answers: hints, length queries, and what each call sends

const u32At = (s: IoctlStruct, off: number) => new DataView(s.bytes.buffer, s.bytes.byteOffset).getUint32(off, true);
const setU32 = (s: IoctlStruct, off: number, v: number) => new DataView(s.bytes.buffer, s.bytes.byteOffset).setUint32(off, v, true);

/** The `kvm_sev_cmd` of a KVM_MEMORY_ENCRYPT_OP, and its data struct. */
function sevCmd(arg: IoctlArg): { id: number; cmd: IoctlStruct; data: IoctlStruct | undefined } {
  if (!isIoctlStruct(arg)) throw new Error('expected a kvm_sev_cmd');
  const fx = arg.fixups.find((f) => f.offset === kvm_sev_cmd.offsetOf('data'));
  return { id: u32At(arg, 0), cmd: arg, data: fx?.target as IoctlStruct | undefined };
}

/** A firmware failure: EIO with `status` written back in kvm_sev_cmd.error. */
function fwFail(cmd: IoctlStruct, status: number): never {
  setU32(cmd, kvm_sev_cmd.offsetOf('error'), status);
  throw errnoError(5, 'ioctl', 'KVM_MEMORY_ENCRYPT_OP');
}

test('scripted: INVALID_GUEST_STATE names the state the command needs and the one the guest is in', async (t) => {
  const { cmds, fake } = setup(t);
  fake.script((req, arg) => {
    if (req === ioc.KVM_MEMORY_ENCRYPT_OP && arg === undefined) return 0;
    const { id, cmd, data } = sevCmd(arg);
    if (id === KVM_SEV.GUEST_STATUS) {
      kvm_sev_guest_status.encode({ handle: 1, policy: 1, state: 3 }, data!.bytes);
      return 0;
    }
    return fwFail(cmd, SEV_RET.INVALID_GUEST_STATE);
  });
  const e = (await t.throwsAsync(cmds.launchMeasure())) as KvmError;
  t.is(e.code, 'EIO');
  t.deepEqual(e.sev, { command: 'LAUNCH_MEASURE', fwError: 2, fwErrorName: 'INVALID_GUEST_STATE' });
  t.regex(e.hint ?? '', /KVM_SEV_LAUNCH_MEASURE runs only in guest state LUPDATE; the guest is in RUNNING/);
  t.regex(e.message, /\[KVM_SEV_LAUNCH_MEASURE, firmware status INVALID_GUEST_STATE \(0x2\)/);
});

test('scripted: launchMeasure uses a 48-byte buffer, and queries the length only after INVALID_LEN', async (t) => {
  const { cmds, fake } = setup(t);
  let calls = 0;
  fake.script((_req, arg) => {
    const { id, cmd, data } = sevCmd(arg);
    t.is(id, KVM_SEV.LAUNCH_MEASURE);
    t.is(u32At(cmd, kvm_sev_cmd.offsetOf('error')), 0, 'error is 0 on entry');
    const m = kvm_sev_launch_measure;
    const len = u32At(data!, m.offsetOf('len'));
    const hasBuf = data!.fixups.length === 1;
    calls++;
    if (calls === 1) {
      t.true(hasBuf);
      t.is(len, 48);
      return fwFail(cmd, SEV_RET.INVALID_LEN); // this firmware wants 64 (len is not written back here)
    }
    if (calls === 2) {
      t.false(hasBuf, 'the query has no buffer');
      t.is(len, 0);
      setU32(data!, m.offsetOf('len'), 64);
      return fwFail(cmd, SEV_RET.INVALID_LEN);
    }
    t.is(len, 64);
    const out = data!.fixups[0]!.target as Uint8Array;
    out.forEach((_, i) => (out[i] = i));
    return 0;
  });
  const r = await cmds.launchMeasure();
  t.is(calls, 3);
  t.deepEqual(
    [...r.measure],
    Array.from({ length: 32 }, (_, i) => i),
  );
  t.deepEqual(
    [...r.mnonce],
    Array.from({ length: 16 }, (_, i) => 32 + i),
  );
});

test('scripted: getAttestationReport and sendStart query the length first (INVALID_LEN), then fetch', async (t) => {
  const { cmds, fake } = setup(t);
  const seen: string[] = [];
  fake.script((_req, arg) => {
    const { id, cmd, data } = sevCmd(arg);
    if (id === KVM_SEV.GET_ATTESTATION_REPORT) {
      const c = kvm_sev_attestation_report;
      t.deepEqual([...data!.bytes.subarray(0, 16)], Array(16).fill(7), 'mnonce passed through');
      if (u32At(data!, c.offsetOf('len')) === 0) {
        seen.push('report?');
        setU32(data!, c.offsetOf('len'), 0xd0);
        return fwFail(cmd, SEV_RET.INVALID_LEN);
      }
      seen.push(`report ${u32At(data!, c.offsetOf('len'))}`);
      (data!.fixups[0]!.target as Uint8Array).fill(0xee);
      return 0;
    }
    const c = kvm_sev_send_start;
    if (u32At(data!, c.offsetOf('session_len')) === 0) {
      seen.push(`session? fixups=${data!.fixups.length}`);
      setU32(data!, c.offsetOf('session_len'), 128);
      return fwFail(cmd, SEV_RET.INVALID_LEN);
    }
    seen.push(`send ${u32At(data!, c.offsetOf('pdh_cert_len'))}/${u32At(data!, c.offsetOf('session_len'))}`);
    setU32(data!, c.offsetOf('policy'), 0x37);
    (data!.fixups.at(-1)!.target as Uint8Array).fill(0x5e);
    return 0;
  });
  const report = await cmds.getAttestationReport(new Uint8Array(16).fill(7));
  t.is(report.byteLength, 0xd0);
  t.true(report.every((x) => x === 0xee));
  const s = await cmds.sendStart({ pdhCert: b(0x824), platCerts: b(3 * 0x824), amdCerts: b(0x440) });
  t.is(s.policy, 0x37);
  t.is(s.session.byteLength, 128);
  t.true(s.session.every((x) => x === 0x5e));
  t.deepEqual(seen, ['report?', 'report 208', 'session? fixups=0', 'send 2084/128']);
});

test('scripted: a length query failing with another status is thrown, enriched', async (t) => {
  const { cmds, fake } = setup(t);
  fake.script((_req, arg) => fwFail(sevCmd(arg).cmd, SEV_RET.POLICY_FAILURE));
  const e = (await t.throwsAsync(cmds.sendStart({ pdhCert: b(1), platCerts: b(1), amdCerts: b(1) }))) as KvmError;
  t.deepEqual(e.sev, { command: 'SEND_START', fwError: 7, fwErrorName: 'POLICY_FAILURE' });
  t.regex(e.hint ?? '', /NOSEND \(bit 3\)/);
  const d = (await t.throwsAsync(cmds.dbgDecrypt(mappingRange(mapping(), 0, 16), b(16)))) as KvmError;
  t.regex(d.hint ?? '', /NODBG \(policy bit 0\)/);
});

test('scripted: ENOMEM, EBUSY, EBADF, EINVAL (INIT2) and ENOTTY on an SEV host get their hints', async (t) => {
  const s = setup(t, KVM_X86_SEV_VM);
  const noFd = new SevGuestCommands(s.vm);
  const es = new SevGuestCommands(s.vm, s.sevFd);
  let errno = 0;
  s.fake.script((req, arg) => {
    if (req === ioc.KVM_MEMORY_ENCRYPT_OP && arg === undefined) return 0; // SEV is enabled
    throw errnoError(errno, 'ioctl', req === ioc.KVM_MEMORY_ENCRYPT_OP ? 'KVM_MEMORY_ENCRYPT_OP' : 'KVM_MEMORY_ENCRYPT_REG_REGION');
  });
  const hint = async (n: number, f: () => unknown) => {
    errno = n;
    try {
      await f();
    } catch (e) {
      return (e as KvmError).hint ?? '';
    }
    t.fail('no error');
    return '';
  };
  const range = mappingRange(s.mem, 0, 0x1000);
  t.regex(await hint(12, () => s.cmds.launchUpdateData(range)), /RLIMIT_MEMLOCK.*`ulimit -l`.*`LimitMEMLOCK=`.*CAP_IPC_LOCK/s);
  t.regex(await hint(12, () => s.cmds.launchUpdateData(range)), /\(RLIMIT_MEMLOCK is 8 MiB\)/, "the limit from the backend's system view");
  t.regex(await hint(12, () => s.cmds.registerRegion(range)), /RLIMIT_MEMLOCK/);
  t.regex(await hint(16, () => s.cmds.init2()), /No free SEV ASID.*misc cgroup limit "sev"/s);
  t.regex(await hint(16, () => es.esInit()), /No free SEV-ES ASID.*"sev_es"/s);
  t.regex(await hint(9, () => noFd.launchStart({ policy: 1 })), /none was given \(sev_fd = -1\)/);
  t.regex(
    await hint(9, () => s.cmds.receiveStart({ policy: 1, pdh: b(1), session: b(1) })),
    new RegExp(`sev_fd ${s.sevFd.fd} is not an open /dev/sev`),
  );
  t.regex(
    await hint(22, () => s.cmds.init2({ flags: 1, vmsaFeatures: 0x20n })),
    /flags must be 0.*vmsa_features.*ghcb_version.*got flags 1, vmsa_features 0x20, ghcb_version 0, VM type KVM_X86_SEV_VM/s,
  );
  t.regex(await hint(25, () => s.cmds.guestStatus()), /^This VM is not an SEV guest yet: run INIT first/);
  t.regex(await hint(25, () => s.cmds.launchUpdateVmsa()), /not an SEV-ES guest/);
  t.regex(await hint(1, () => s.cmds.snpLaunchFinish()), /SEV-SNP guest: it accepts only the SNP commands/);
  t.regex(await hint(5, () => s.cmds.launchFinish()), /The VM is dead/);
});

test('scripted: INIT/ES_INIT EINVAL on a non-default VM type points at init2()', async (t) => {
  const { cmds, fake } = setup(t, KVM_X86_SEV_VM);
  fake.script(() => {
    throw errnoError(22, 'ioctl', 'KVM_MEMORY_ENCRYPT_OP');
  });
  const e = (await t.throwsAsync(cmds.init())) as KvmError;
  t.regex(e.hint ?? '', /KVM_SEV_INIT works only on KVM_X86_DEFAULT_VM; this VM is KVM_X86_SEV_VM: use init2\(\)/);
});

test('scripted /dev/sev: EPERM, INVALID_PLATFORM_STATE with the current state, and the PEK_CSR / PDH_CERT_EXPORT length queries', async (t) => {
  const { platform, fake } = setup(t);
  const log: string[] = [];
  fake.script((req, arg) => {
    t.is(req, ioc.SEV_ISSUE_CMD);
    const a = arg as IoctlStruct;
    const cmd = u32At(a, 0);
    t.is(u32At(a, sev_issue_cmd.offsetOf('error')), 0, 'error is 0 on entry');
    const data = a.fixups[0]?.target as IoctlStruct | undefined;
    const fail = (status: number, errno = 5): never => {
      setU32(a, sev_issue_cmd.offsetOf('error'), status);
      throw errnoError(errno, 'ioctl', 'SEV_ISSUE_CMD');
    };
    switch (cmd) {
      case SEV_CMD.PDH_GEN:
        return fail(0, 1);
      case SEV_CMD.PEK_GEN:
        return fail(SEV_RET.INVALID_PLATFORM_STATE);
      case SEV_CMD.PLATFORM_STATUS:
        sev_user_data_status.encode({ api_major: 1, api_minor: 55, state: 2, flags: 0x101, build: 21, guest_count: 2 }, data!.bytes);
        return 0;
      case SEV_CMD.PEK_CSR: {
        const len = u32At(data!, sev_user_data_pek_csr.offsetOf('length'));
        log.push(`csr ${len}`);
        if (len === 0) {
          setU32(data!, sev_user_data_pek_csr.offsetOf('length'), 0x824);
          return fail(SEV_RET.INVALID_LEN);
        }
        (data!.fixups[0]!.target as Uint8Array).fill(3);
        return 0;
      }
      case SEV_CMD.PDH_CERT_EXPORT: {
        const c = sev_user_data_pdh_cert_export;
        const pl = u32At(data!, c.offsetOf('pdh_cert_len'));
        const cl = u32At(data!, c.offsetOf('cert_chain_len'));
        log.push(`export ${pl}/${cl}`);
        if (pl === 0) {
          setU32(data!, c.offsetOf('pdh_cert_len'), 0x824);
          setU32(data!, c.offsetOf('cert_chain_len'), 0x186c);
          return fail(SEV_RET.INVALID_LEN);
        }
        return 0;
      }
      default:
        return fail(SEV_RET.INVALID_COMMAND);
    }
  });
  const perm = (await t.throwsAsync(platform.pdhGen())) as KvmError;
  t.is(perm.code, 'EPERM');
  t.deepEqual(perm.sev, { command: 'PDH_GEN', fwError: 0, fwErrorName: 'SUCCESS' });
  t.regex(perm.hint ?? '', /opened read-only: reopen it writable/);
  const st = (await t.throwsAsync(platform.pekGen())) as KvmError;
  t.deepEqual(st.sev, { command: 'PEK_GEN', fwError: 1, fwErrorName: 'INVALID_PLATFORM_STATE' });
  t.regex(st.hint ?? '', /SEV_PEK_GEN needs the platform INIT; it is WORKING with 2 guest\(s\)/);
  t.regex(st.message, /\[SEV_PEK_GEN, firmware status INVALID_PLATFORM_STATE \(0x1\)/);
  const status = await platform.platformStatus();
  t.deepEqual(status, {
    apiMajor: 1,
    apiMinor: 55,
    build: 21,
    state: 2,
    stateName: 'WORKING',
    flags: 0x101,
    owner: true,
    configEs: true,
    guestCount: 2,
  });
  const csr = await platform.pekCsr();
  t.is(csr.byteLength, 0x824);
  t.true(csr.every((x) => x === 3));
  const exp = await platform.pdhCertExport();
  t.is(exp.pdh.byteLength, 0x824);
  t.is(exp.certChain.byteLength, 0x186c);
  t.deepEqual(log, ['csr 0', 'csr 2084', 'export 0/0', 'export 2084/6252']);
});

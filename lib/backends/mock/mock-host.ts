/**
 * MockHost: the Backend contract over a model of the Linux kernel (KVM, kvm_amd's SEV code, the PSP
 * driver) and the AMD Secure Processor firmware. Instance-scoped: two hosts share nothing (fd
 * numbers, user addresses, ASIDs, firmware keys, local-migration tokens, socket paths).
 *
 * Every ioctl goes the way it goes through the native shim: the same argument validation
 * (marshal.ts), the kernel model on the struct bytes, the same write-back, errors of the same class
 * and shape (KvmError: code, negative errno, syscall 'ioctl', request name). The hybrid backend uses
 * the SEV half through {@link MockHost.sev} (see index.ts).
 */
import type { Backend, BackendFd, DevicePath, GuestMapping, IoctlCall, ReceivedFds, VcpuRunHandle } from '../../backend/contract.js';
import { ioctlEach } from '../../backend/ioctl-batch.js';
import { KvmSevError, errnoError } from '../../backend/errors.js';
import type { AnyStructCodec } from '../../uapi/codec.js';
import { PAGE_SIZE, sevPlatformCommandName } from '../../uapi/constants.js';
import { invalidArgType, invalidArgValue } from '../../uapi/errors.js';
import type { IoctlArg } from '../../uapi/ioctl-arg.js';
import { ioctlByRequest, type IoctlDef } from '../../uapi/ioctls.js';
import { sevPlatformCommandStruct } from '../../uapi/psp-structs.js';
import { SevCommandTable } from '../../uapi/sev-command-table.js';
import { FdTable, KernelFile, MockFd } from './kernel/common/files.js';
import { DevKvmFile, DevSevFile, MemfdFile, MockKernel, VcpuFile, VmFile, type KernelCall } from './kernel/kernel.js';
import type { MockVm } from './kernel/kvm/vm.js';
import { AsyncCall, runSync, sleepSync, type CallOutcome, type CallSteps } from './syscall/call-runner.js';
import { KernelErrno } from './kernel/common/errno.js';
import { AsidSpace } from './kernel/svm/asid.js';
import { MockRunner } from './syscall/runner.js';
import { MockSevKernel } from './kernel/svm/sev.js';
import { SevMemory } from './kernel/svm/sev-memory.js';
import type { SevVm, SevVmPort } from './kernel/svm/sev-types.js';
import { supportedCpuid } from './kernel/kvm/tables.js';
import { argSize, argU32, codedError, Marshalled, rangeErr, typeErr, valueErr } from './syscall/marshal.js';
import { MockMapping, pageAlignedSize } from './kernel/common/mapping.js';
import { resolveOptions, type MockHostOptions, type ResolvedOptions } from './options.js';
import { CiphertextMemory } from './psp/ciphertext-memory.js';
import { MockFirmware } from './psp/firmware.js';
import type { SevFirmware } from './psp/api.js';
import { SevDriver } from './kernel/ccp/sev-dev.js';
import { SocketFile, SocketLayer } from './kernel/common/unix-sockets.js';
import { MockSystemView } from './mock-system-view.js';
import { MockTrace, type TraceEntry } from './trace.js';
import { UserMemory } from './kernel/common/user-memory.js';
import { EventfdFile } from './kernel/common/eventfd.js';
import { StatsFile } from './kernel/kvm/stats.js';
import type { GuestOp } from './kernel/kvm/guest-ops.js';

const KVM_RUN_SIZE = 2352; // sizeof(struct kvm_run) on x86_64
const SEV_VM_REQUESTS: ReadonlySet<string> = new Set([
  'KVM_MEMORY_ENCRYPT_OP',
  'KVM_MEMORY_ENCRYPT_REG_REGION',
  'KVM_MEMORY_ENCRYPT_UNREG_REGION',
]);

/** A VM of the hybrid (or any KVM the mock does not own), attached to the mock's SEV layer. */
export interface MockSevVm {
  /** After MOVE took its context: every SEV ioctl answers EIO (the hybrid makes all its ioctls do so). */
  readonly dead: boolean;
  /** KVM_MEMORY_ENCRYPT_OP / REG_REGION / UNREG_REGION with the same arguments as Backend.ioctl. */
  ioctl(request: number, arg?: IoctlArg): number;
  ioctlAsync(request: number, arg?: IoctlArg): Promise<number>;
  /** KVM_ENABLE_CAP(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) after the fd was resolved (null: EBADF). */
  moveEncContextFrom(source: MockSevVm | null): void;
  /** KVM_ENABLE_CAP(KVM_CAP_VM_COPY_ENC_CONTEXT_FROM) after the fd was resolved (null: EBADF). */
  copyEncContextFrom(source: MockSevVm | null): void;
  /** Demand pinning: the guest touched [uaddr, uaddr+length) (ENOMEM over RLIMIT_MEMLOCK). */
  touch(uaddr: bigint, length: number): void;
  /** The VM was destroyed (its last reference went): unpin, DEACTIVATE, DECOMMISSION, ASID to reclaim. */
  destroy(): void;
}

/** What the SEV layer holds (tests, invariants, the hybrid). */
export interface SevSnapshot {
  readonly asidsHeld: number[];
  readonly asidsReclaimable: number[];
  readonly vms: {
    id: number;
    active: boolean;
    asid: number;
    handle: number;
    pagesLocked: number;
    regions: number;
    mirror: boolean;
    dead: boolean;
    token: bigint;
  }[];
  readonly tokens: number;
  readonly platformState: number;
  readonly pspDead: boolean;
}

export class MockHost implements Backend {
  readonly name = 'mock' as const;
  readonly options: Readonly<ResolvedOptions>;
  readonly trace: MockTrace;
  /** The process's address space as the kernel sees it (the hybrid registers its mappings here). */
  readonly memory: UserMemory;
  readonly firmware: SevFirmware;
  readonly driver: SevDriver;
  /** What a diagnosis reads from the host (kvm_amd parameters, memlock, devices, CPU flags). */
  readonly system: MockSystemView;
  /** The KVM_SEV command ids of the kernel profile (the 2021 patch's LOCAL_SEND/RECEIVE at 22/23, or upstream), for every VM. */
  readonly sevCommands: SevCommandTable;
  private readonly fds = new FdTable();
  private readonly kernel: MockKernel;
  private readonly sevKernel: MockSevKernel;
  private readonly asids: AsidSpace;
  private readonly sockets: SocketLayer;
  private readonly selectors: ReadonlyMap<string, (k: number) => AnyStructCodec | null | undefined>;
  private current: TraceEntry | undefined;
  /** Seam handles → the SEV layer's VMs (MOVE/COPY between attached VMs). */
  private readonly sevHandles = new WeakMap<object, SevVm>();
  private pspBusyUntil = 0;
  private readonly sevEnabled: boolean;
  private readonly esEnabled: boolean;

  constructor(options: MockHostOptions = {}) {
    const o = resolveOptions(options);
    this.options = Object.freeze(o);
    const p = o.processor;
    this.sevEnabled = o.sev.enabled && p.maxSevAsid > 0;
    this.esEnabled = this.sevEnabled && o.sev.es && p.sevEs && p.minSevAsid > 1;
    const snp = this.esEnabled && o.sev.snp && p.sevSnp === true; // SNP needs Milan or later
    this.trace = new MockTrace(o.trace);
    this.system = new MockSystemView(this.options, { sev: this.sevEnabled, es: this.esEnabled, snp });
    this.memory = new UserMemory();
    this.firmware = options.firmware ?? new MockFirmware({ profile: p, memory: options.memory ?? new CiphertextMemory() });
    this.driver = new SevDriver(this.firmware, {
      faults: o.faults,
      ...(o.throttle ? { throttle: o.throttle } : {}),
      sevMax: o.kernel === 'local-migration-2021' ? 9 : 13,
    });
    this.driver.onCommand = (command, status) => this.current?.firmware.push({ command, status });
    this.asids = new AsidSpace(p.minSevAsid, p.maxSevAsid);
    const legacy = o.kernel === 'local-migration-2021';
    const vmsaFeatures = this.esEnabled && (p.name === 'milan' || p.name === 'genoa') ? 1n << 5n : 0n;
    this.sevKernel = new MockSevKernel({
      kernel: o.kernel,
      enabled: this.sevEnabled,
      es: this.esEnabled,
      snp,
      mem: this.memory,
      driver: this.driver,
      asids: this.asids,
      memory: new SevMemory(this.memory, o.memlock, o.pinning, o.kernel === '7.2' ? Number(o.totalRam >> 12n) : undefined),
      isSevFd: (n) => this.fds.lookup(n) instanceof DevSevFile,
      vmByFd: (n) => {
        const f = this.fds.lookup(n);
        return f === undefined ? undefined : f instanceof VmFile ? f.vm.sev : 'other';
      },
      vmsaFeatures,
    });
    const mask = 1 | (this.sevEnabled ? 4 : 0) | (this.esEnabled ? 8 : 0) | (snp ? 16 : 0);
    this.kernel = new MockKernel({
      kernel: o.kernel,
      mem: this.memory,
      driver: this.driver,
      sev: this.sevKernel,
      cpuid: supportedCpuid(p, { enabled: this.sevEnabled, es: this.esEnabled, snp }),
      vmTypesMask: legacy ? 1 : mask,
      sevAttrs: { vmsaFeatures: this.sevEnabled ? vmsaFeatures : 0n, snpPolicyBits: snp ? 0x1fffffn : 0n, snp },
      onDestroy: (f) => this.traced('VM_DESTROY', f),
      fileOf: (n) => this.fds.lookup(n),
    });
    this.sockets = new SocketLayer(this.fds);
    this.sevCommands = legacy ? SevCommandTable.LOCAL_MIGRATION_2021 : SevCommandTable.UPSTREAM;
    const sevCommands = this.sevCommands;
    this.selectors = new Map<string, (k: number) => AnyStructCodec | null | undefined>([
      ['kvm_sev_cmd', (id) => sevCommands.struct(id)],
      ['sev_issue_cmd', sevPlatformCommandStruct],
    ]);
  }

  // ---------------------------------------------------------------------------------------------
  // Devices and fds

  open(path: DevicePath, options: { write?: boolean } = {}): BackendFd {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'object', options);
    if (typeof path !== 'string') throw typeErr('The "path" argument must be of type string');
    const write = options.write === undefined ? true : Boolean(options.write);
    if (path === '/dev/kvm') return this.fds.install(new DevKvmFile());
    if (path === '/dev/sev') {
      if (!this.sevEnabled) throw errnoError(2, 'open', undefined, path);
      return this.fds.install(new DevSevFile(write));
    }
    throw valueErr(`The "path" argument must be '/dev/kvm' or '/dev/sev'. Received '${String(path)}'`);
  }

  /** The open file behind a fd of this host (ERR_INVALID_ARG_TYPE for anything else, EBADF if closed). */
  private file(fd: BackendFd, name = 'fd'): KernelFile {
    if (!(fd instanceof MockFd) || fd.table !== this.fds) throw invalidArgType(name, 'an instance of FdHandle (of this mock host)', fd);
    const f = fd.kernelFile;
    if (!f) throw errnoError(9, 'ioctl');
    return f;
  }

  // ---------------------------------------------------------------------------------------------
  // ioctl

  ioctl(fd: BackendFd, request: number, arg?: IoctlArg): number {
    const call = this.prepare(fd, request, arg, false, false);
    return call.finish(call.runSync());
  }

  ioctlAsync(fd: BackendFd, request: number, arg?: IoctlArg): Promise<number> {
    let call: Prepared;
    try {
      call = this.prepare(fd, request, arg, false, true);
    } catch (e) {
      return Promise.reject(e);
    }
    return call.runAsync();
  }

  ioctlBatch(calls: readonly IoctlCall[]): number[] {
    return ioctlEach(this, calls);
  }
  ioctlFd(fd: BackendFd, request: number, arg?: IoctlArg): BackendFd {
    const call = this.prepare(fd, request, arg, true, false);
    const out = call.runSync();
    if (out.errno || typeof out.result === 'number') {
      call.finish(out);
      throw codedError('ERR_KVM_SEV_RETURNS_FD', `${call.def.name} made no fd`);
    }
    const nfd = this.fds.install(out.result);
    // KVM_CREATE_DEVICE: the kernel writes the fd into the struct (fd_install, then copy_to_user).
    if (call.def.fdOut !== undefined) call.m?.writeRootU32(call.def.fdOut, nfd.fd);
    call.finish(out);
    return nfd;
  }

  private prepare(fd: BackendFd, request: number, arg: IoctlArg, wantFd: boolean, async: boolean): Prepared {
    const file = this.file(fd);
    const req = argU32(request, 'request');
    const def = ioctlByRequest(req);
    if (!def) {
      throw codedError(
        'ERR_KVM_SEV_UNKNOWN_IOCTL',
        `ioctl request 0x${req.toString(16).toUpperCase().padStart(8, '0')} is not in kvm-sev's allowlist of known KVM and SEV requests`,
      );
    }
    if (!['kvm', 'sev', 'vm', 'vcpu', 'device'].includes(file.kind)) throw valueErr(`${def.name} cannot be issued on a ${file.kind} fd`);
    if (def.name === 'KVM_RUN')
      throw codedError(
        'ERR_KVM_SEV_USE_RUNNER',
        "KVM_RUN runs on the vCPU's own thread: use a VcpuRunner (run() or runSync()), not ioctl()",
      );
    // KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST only asks whether the type exists: ioctl(), no fd.
    if (def.returnsFd && !wantFd && def.name !== 'KVM_CREATE_DEVICE')
      throw codedError('ERR_KVM_SEV_RETURNS_FD', `${def.name} returns a new fd: use ioctlFd()`);
    if (!def.returnsFd && wantFd) throw codedError('ERR_KVM_SEV_RETURNS_FD', `${def.name} does not return an fd: use ioctl()`);
    const m = this.marshal(def, arg, file instanceof VmFile ? file.vm : undefined);
    if (def.name === 'KVM_CREATE_DEVICE' && m.m) {
      const test = (m.m.readRootU32(8) & 1) !== 0; // kvm_create_device.flags & KVM_CREATE_DEVICE_TEST
      let bad: Error | undefined;
      if (test && wantFd) bad = valueErr('KVM_CREATE_DEVICE with KVM_CREATE_DEVICE_TEST creates no fd: use ioctl()');
      if (!test && !wantFd) bad = codedError('ERR_KVM_SEV_RETURNS_FD', 'KVM_CREATE_DEVICE returns a new fd: use ioctlFd()');
      if (bad) {
        m.m.release();
        throw bad;
      }
    }
    return new Prepared(this, (fd as MockFd).fd, file, def, m, async, (k) => this.kernel.begin(file, def, k, wantFd));
  }

  /** Validates the argument as the native shim does. */
  private marshal(def: IoctlDef, arg: unknown, vm?: MockVm): { m: Marshalled | undefined; int: bigint } {
    switch (def.arg) {
      case 'none':
        if (arg !== undefined && arg !== 0) throw typeErr(`${def.name} takes no argument`);
        return { m: undefined, int: 0n };
      case 'int':
        return { m: undefined, int: arg === undefined ? 0n : argSize(arg, 'arg') };
      default: {
        if (def.nullArg && (arg === undefined || arg === null || arg === 0)) return { m: undefined, int: 0n };
        const slotBytes = (slot: number) => {
          const s = vm?.slots.get(slot);
          return s ? BigInt(s.size) : undefined;
        };
        const m = new Marshalled(this.memory, this.selectors, def.name, slotBytes);
        try {
          m.buildRoot(arg, def.struct!, def.variable);
        } catch (e) {
          m.release();
          throw e;
        }
        return { m, int: 0n };
      }
    }
  }

  /** @internal one step of Prepared: run the kernel handler and record the trace. */
  runKernel(p: Prepared, exec: () => number | KernelFile): Outcome {
    const entry = this.trace.enabled ? this.trace.begin(p.fdNum, p.file.kind, p.def.name, p.async) : undefined;
    if (entry) this.traceIn(entry, p);
    this.current = entry;
    this.driver.costMs = 0;
    const issuedAt = performance.now();
    let result: number | KernelFile = 0;
    let errno = 0;
    try {
      result = exec();
    } catch (e) {
      if (!(e instanceof KernelErrno)) throw e;
      errno = e.errno;
    } finally {
      this.current = undefined;
    }
    // One PSP timeline: a throttled command starts when it was issued or when the previous one is
    // done, and the time this model itself spent on it counts as part of its PSP time.
    let delayMs = 0;
    if (this.driver.costMs > 0) {
      const now = performance.now();
      const start = Math.max(issuedAt, this.pspBusyUntil);
      this.pspBusyUntil = start + this.driver.costMs;
      // A debt under a millisecond is not slept now (a timer cannot wait less): it stays on the
      // timeline and is paid once it adds up, so fast rates (10,000 commands/s) average out right.
      const debt = this.pspBusyUntil - now;
      delayMs = debt >= 1 ? debt : 0;
    }
    if (entry) {
      this.traceOut(entry, p, errno, typeof result === 'number' ? result : 0);
      this.trace.commit(entry);
    }
    return { errno, result, delayMs };
  }

  /** Work outside an ioctl that issues firmware commands (a VM's destruction): traced as `request`. */
  private traced(request: string, f: () => void): void {
    if (this.current || !this.trace.enabled) return f();
    const e = this.trace.begin(-1, 'vm', request, false);
    this.current = e;
    try {
      f();
    } finally {
      this.current = undefined;
      if (e.firmware.length > 0) this.trace.commit(e);
    }
  }

  private traceIn(e: TraceEntry, p: Prepared): void {
    if (p.def.arg === 'int') e.arg = p.int;
    const s = p.m?.structs;
    if (!s || s.length === 0) return;
    e.in = s[0]!.codec.decode(s[0]!.bytes) as Record<string, unknown>;
    if (s[1]) e.dataIn = s[1].codec.decode(s[1].bytes) as Record<string, unknown>;
    const id = (e.in as { id?: number; cmd?: number }).id ?? (e.in as { cmd?: number }).cmd;
    if (p.def.name === 'KVM_MEMORY_ENCRYPT_OP' && id !== undefined) {
      e.command = this.sevCommands.commandName(id) ?? String(id);
    } else if (p.def.name === 'SEV_ISSUE_CMD' && id !== undefined) {
      e.command = sevPlatformCommandName(id) ?? String(id);
    }
  }

  private traceOut(e: TraceEntry, p: Prepared, errno: number, result: number): void {
    if (errno) e.errno = errnoError(errno, 'ioctl').code;
    else e.result = result;
    const s = p.m?.structs;
    if (!s || s.length === 0) return;
    e.out = s[0]!.codec.decode(s[0]!.bytes) as Record<string, unknown>;
    if (s[1]) e.dataOut = s[1].codec.decode(s[1].bytes) as Record<string, unknown>;
    if (e.command !== undefined) e.fwError = (e.out as { error?: number }).error ?? 0;
  }

  // ---------------------------------------------------------------------------------------------
  // KVM_SEV command ids: the kernel profile's, for every VM

  sevCommandTable(vm: BackendFd): SevCommandTable {
    if (!(this.file(vm, 'vm') instanceof VmFile)) throw valueErr('The "vm" argument must be a VM fd (KVM_SEV commands go to a VM)');
    return this.sevCommands;
  }

  setSevCommandTable(vm: BackendFd, table: SevCommandTable): void {
    this.sevCommandTable(vm);
    this.checkSevCommandTable(table);
  }

  /** Throws ERR_KVM_SEV_COMMAND_TABLE unless the mocked kernel speaks `table` (the hybrid asks this for its VMs). */
  checkSevCommandTable(table: SevCommandTable): void {
    if (!(table instanceof SevCommandTable)) throw invalidArgType('table', 'an instance of SevCommandTable', table);
    if (table.equals(this.sevCommands)) return;
    const has2021 = this.sevCommands.localMigration !== undefined;
    throw new KvmSevError(
      'ERR_KVM_SEV_COMMAND_TABLE',
      `the mock's kernel (profile '${this.options.kernel}') has the KVM_SEV command ids "${this.sevCommands.name}", not "${table.name}": ` +
        (has2021
          ? 'it carries the 2021 local-migration patch, so id 22 is LOCAL_SEND and 23 LOCAL_RECEIVE (and there is no KVM_SEV_INIT2).'
          : "id 22 is KVM_SEV_INIT2 here; LOCAL_SEND/LOCAL_RECEIVE exist only in the 'local-migration-2021' profile (new MockHost({ kernel: 'local-migration-2021' }))."),
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Memory

  mmapAnonymous(size: number): GuestMapping {
    const n = pageAlignedSize(size);
    return new MockMapping(this.memory.newBacking(n), 0, n, () => {});
  }

  memfdCreate(name: string, size: number): BackendFd {
    if (typeof name !== 'string') throw typeErr('The "name" argument must be of type string');
    const n = pageAlignedSize(size);
    return this.fds.install(new MemfdFile(name, this.memory.newBacking(n)));
  }

  mmapShared(memfd: BackendFd, size: number, offset = 0): GuestMapping {
    const f = this.file(memfd, 'fd');
    if (!(f instanceof MemfdFile)) throw valueErr('The "fd" argument must be a memfd');
    const n = pageAlignedSize(size);
    const off = Number(argSize(offset, 'offset'));
    if (off % PAGE_SIZE !== 0) throw rangeErr('The value of "offset" is out of range. It must be a multiple of 4096');
    if (off + n > f.backing.size)
      throw rangeErr(`The mapping [${off}, +${n}) runs past the memfd's ${f.backing.size} bytes (the mock cannot map beyond a memfd)`);
    return new MockMapping(f.backing, off, n, () => {});
  }

  createRunner(vcpu: BackendFd, mmapSize: number): VcpuRunHandle {
    const f = this.file(vcpu, 'vcpu');
    if (!(f instanceof VcpuFile)) throw valueErr('The "vcpu" argument must be a vCPU fd');
    const size = argSize(mmapSize, 'mmapSize');
    if (size < BigInt(KVM_RUN_SIZE) || size > 1n << 24n) throw rangeErr('The value of "mmapSize" is out of range (KVM_GET_VCPU_MMAP_SIZE)');
    return new MockRunner(vcpu as MockFd, f.vm, f.vcpu, Number(size), this.memory);
  }

  /**
   * Test seam: the next instructions the guest of `vcpu` executes, as effects KVM handles (VMMCALL,
   * RDMSR/WRMSR, OUT, stores, taking the PIC's interrupt, a triple fault, an SEV-ES guest's VMGEXIT;
   * see kernel/kvm/guest-ops.ts). KVM_RUN then exits where the kernel
   * would, and completes each exit from the VMM's reply, so the code above a backend runs as on a
   * CPU. The pure mock still runs no guest code: with the queue empty, KVM_RUN fails as before.
   */
  queueGuestOps(vcpu: BackendFd, ops: readonly GuestOp[]): void {
    const f = this.file(vcpu, 'vcpu');
    if (!(f instanceof VcpuFile)) throw valueErr('The "vcpu" argument must be a vCPU fd');
    f.vcpu.guestOps.push(...ops);
  }

  // ---------------------------------------------------------------------------------------------
  // eventfds and stats fds (the same checks and errors as native/eventfd.cc)

  eventfd(options: { initval?: number; semaphore?: boolean } = {}): BackendFd {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'object', options);
    const init = options.initval === undefined ? 0 : argU32(options.initval, 'initval');
    return this.fds.install(new EventfdFile(init, options.semaphore === true));
  }

  private eventfdFile(fd: BackendFd): EventfdFile {
    const f = this.file(fd, 'fd');
    if (!(f instanceof EventfdFile)) throw valueErr(`The "fd" argument must be an eventfd; got a ${f.kind} fd`);
    return f;
  }

  eventfdWrite(fd: BackendFd, value: bigint = 1n): void {
    const f = this.eventfdFile(fd);
    const v = argSize(value, 'value');
    if (v === 0n || v === 0xffff_ffff_ffff_ffffn) throw rangeErr('The value of "value" is out of range. It must be >= 1 and < 2^64 - 1');
    try {
      f.write(v);
    } catch (e) {
      if (e instanceof KernelErrno) throw errnoError(e.errno, 'write');
      throw e;
    }
  }

  eventfdRead(fd: BackendFd): bigint {
    return this.eventfdFile(fd).read();
  }

  private readonly eventfdWaits = new Map<EventfdFile, { cancel: () => void }>();

  eventfdWait(fd: BackendFd): Promise<bigint> {
    let f: EventfdFile;
    try {
      f = this.eventfdFile(fd);
      if (this.eventfdWaits.has(f))
        throw codedError('ERR_KVM_SEV_EVENTFD_BUSY', 'this eventfd already has a wait() in flight (one at a time)');
    } catch (e) {
      return Promise.reject(e);
    }
    const now = f.read();
    if (now !== 0n) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const wake = () => {
        const v = f.read();
        if (v === 0n) return void f.waiters.push(wake); // a kernel consumer (irqfd) took it: keep waiting
        this.eventfdWaits.delete(f);
        resolve(v);
      };
      f.waiters.push(wake);
      this.eventfdWaits.set(f, {
        cancel: () => {
          const i = f.waiters.indexOf(wake);
          if (i >= 0) f.waiters.splice(i, 1);
          this.eventfdWaits.delete(f);
          reject(
            Object.assign(new Error('The operation was aborted: the eventfd wait was cancelled'), {
              code: 'ABORT_ERR',
              name: 'AbortError',
            }),
          );
        },
      });
    });
  }

  eventfdCancel(fd: BackendFd): void {
    if (fd.closed) return;
    this.eventfdWaits.get(this.eventfdFile(fd))?.cancel();
  }

  pread(fd: BackendFd, into: Uint8Array, position: number): number {
    const f = this.file(fd, 'fd');
    if (!(f instanceof StatsFile)) throw valueErr(`pread() reads stats fds (KVM_GET_STATS_FD); got a ${f.kind} fd`);
    if (!(into instanceof Uint8Array)) throw typeErr('The "buffer" argument must be a Uint8Array');
    return f.pread(into, Number(argSize(position, 'position')));
  }

  // ---------------------------------------------------------------------------------------------
  // Sockets

  socketPair(): [BackendFd, BackendFd] {
    return this.sockets.pair();
  }
  unixListen(path: string): BackendFd {
    if (typeof path !== 'string') throw typeErr('The "path" argument must be of type string');
    return this.sockets.listen(path);
  }
  unixConnect(path: string): BackendFd {
    if (typeof path !== 'string') throw typeErr('The "path" argument must be of type string');
    return this.sockets.connect(path);
  }
  unixAccept(listener: BackendFd): Promise<BackendFd> {
    try {
      const f = this.file(listener, 'listener');
      if (!(f instanceof SocketFile) || !f.listening) throw valueErr('The "listener" argument must be a listening socket');
      return this.sockets.accept(f);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  sendFds(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): Promise<number> {
    try {
      const f = this.file(socket, 'socket');
      if (!(f instanceof SocketFile)) throw valueErr('The "socket" argument must be a socket');
      if (!(data instanceof Uint8Array)) throw invalidArgType('data', 'an instance of Uint8Array', data);
      if (!Array.isArray(fds)) throw invalidArgType('fds', 'an instance of Array', fds);
      return Promise.resolve(
        this.sockets.send(
          f,
          data,
          (fds as readonly BackendFd[]).map((x, i) => this.file(x, `fds[${i}]`)),
        ),
      );
    } catch (e) {
      return Promise.reject(e);
    }
  }
  recvFds(socket: BackendFd, maxBytes: number, maxFds = 16): Promise<ReceivedFds> {
    try {
      const f = this.file(socket, 'socket');
      if (!(f instanceof SocketFile)) throw valueErr('The "socket" argument must be a socket');
      return this.sockets.recv(f, Number(argSize(maxBytes, 'maxBytes')), Number(argSize(maxFds, 'maxFds')));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The SEV seam (hybrid) and introspection

  /** The SEV half of the kernel, callable without the mock's own KVM (see index.ts). */
  readonly sev = {
    attach: (port: SevVmPort): MockSevVm => this.attachSev(port),
    snapshot: (): SevSnapshot => this.snapshot(),
  };

  private attachSev(port: SevVmPort): MockSevVm {
    const vm = this.sevKernel.attach(port);
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the Prepared objects below outlive this call
    const host = this;
    const exec = (request: number, arg: IoctlArg | undefined, async: boolean): Prepared => {
      const req = argU32(request, 'request');
      const def = ioctlByRequest(req);
      if (!def || !SEV_VM_REQUESTS.has(def.name))
        throw invalidArgValue(
          'request',
          request,
          'must be KVM_MEMORY_ENCRYPT_OP, KVM_MEMORY_ENCRYPT_REG_REGION or KVM_MEMORY_ENCRYPT_UNREG_REGION',
        );
      const m = host.marshal(def, arg);
      return new Prepared(host, -1, { kind: 'vm' } as KernelFile, def, m, async, (k) => {
        if (vm.dead) throw new KernelErrno(5);
        return {
          mutexes: [vm.lock],
          yields: false,
          run: () => {
            if (def.name === 'KVM_MEMORY_ENCRYPT_OP') return host.sevKernel.memEncOp(vm, k.addr);
            if (def.name === 'KVM_MEMORY_ENCRYPT_REG_REGION') return host.sevKernel.regRegion(vm, k.addr);
            return host.sevKernel.unregRegion(vm, k.addr);
          },
          done: () => {},
        };
      });
    };
    const handles = this.sevHandles;
    const cap = (f: (src: SevVm | undefined) => void): void => {
      try {
        f(undefined);
      } catch (e) {
        if (e instanceof KernelErrno) throw errnoError(e.errno, 'ioctl', 'KVM_ENABLE_CAP');
        throw e;
      }
    };
    const handle: MockSevVm = {
      get dead() {
        return vm.dead;
      },
      ioctl(request, arg) {
        const p = exec(request, arg, false);
        return p.finish(p.runSync());
      },
      ioctlAsync(request, arg) {
        let p: Prepared;
        try {
          p = exec(request, arg, true);
        } catch (e) {
          return Promise.reject(e);
        }
        return p.runAsync();
      },
      moveEncContextFrom(source) {
        cap(() => host.sevKernel.moveFromVm(vm, source ? handles.get(source) : undefined));
      },
      copyEncContextFrom(source) {
        cap(() => host.sevKernel.copyFromVm(vm, source ? handles.get(source) : undefined));
      },
      touch(uaddr, length) {
        cap(() => host.sevKernel.touch(vm, uaddr, length));
      },
      destroy() {
        host.traced('VM_DESTROY', () => host.sevKernel.destroy(vm));
      },
    };
    handles.set(handle, vm);
    return handle;
  }

  private snapshot(): SevSnapshot {
    return {
      asidsHeld: this.asids.held(),
      asidsReclaimable: this.asids.reclaimable(),
      vms: [...this.sevKernel.vms].map((v) => ({
        id: v.id,
        active: v.info.active,
        asid: v.info.asid,
        handle: v.info.handle,
        pagesLocked: v.info.pagesLocked,
        regions: v.info.regions.length,
        mirror: v.info.owner !== undefined,
        dead: v.dead,
        token: v.info.infoToken,
      })),
      tokens: this.sevKernel.localMigration.tokens.size,
      platformState: this.driver.state,
      pspDead: this.driver.pspDead,
    };
  }

  /** Open fds of this host. */
  get openFds(): number {
    return this.fds.size;
  }
}

type Outcome = CallOutcome;

/** One validated call: run it (synchronously, or interleaved with others), then finish (write-back, error). */
class Prepared {
  readonly host: MockHost;
  readonly fdNum: number;
  readonly file: KernelFile;
  readonly def: IoctlDef;
  readonly m: Marshalled | undefined;
  readonly int: bigint;
  readonly async: boolean;
  /** The kernel's entry for this call's argument. */
  private readonly enter: (k: { int: bigint; addr: bigint }) => KernelCall;

  constructor(
    host: MockHost,
    fdNum: number,
    file: KernelFile,
    def: IoctlDef,
    mi: { m: Marshalled | undefined; int: bigint },
    async: boolean,
    enter: (k: { int: bigint; addr: bigint }) => KernelCall,
  ) {
    this.host = host;
    this.fdNum = fdNum;
    this.file = file;
    this.def = def;
    this.m = mi.m;
    this.int = mi.int;
    this.async = async;
    this.enter = enter;
  }

  private steps(): CallSteps {
    const k = { int: this.int, addr: this.m?.rootAddr ?? 0n };
    return {
      begin: () => this.enter(k),
      execute: (exec) => this.host.runKernel(this, exec),
    };
  }

  runSync(): Outcome {
    try {
      return runSync(this.steps());
    } catch (e) {
      this.m?.release();
      throw e;
    }
  }

  /** The kernel holds the file for the call (close() of its fd takes effect when the call ends). */
  runAsync(): Promise<number> {
    const ref = this.file instanceof KernelFile ? this.file : undefined;
    ref?.get();
    return new Promise((resolve, reject) => {
      const call = new AsyncCall(this.steps(), (out, error) => {
        try {
          if (!out) {
            this.m?.release();
            reject(error);
          } else resolve(this.finish(out));
        } catch (e) {
          reject(e);
        } finally {
          ref?.put();
        }
      });
      call.start();
    });
  }

  finish(o: Outcome): number {
    if (this.m) {
      this.m.copyBack();
      this.m.release();
    }
    if (o.delayMs > 0 && !this.async) sleepSync(o.delayMs);
    if (o.errno) throw errnoError(o.errno, 'ioctl', this.def.name);
    return typeof o.result === 'number' ? o.result : 0;
  }
}

export { KvmSevError };

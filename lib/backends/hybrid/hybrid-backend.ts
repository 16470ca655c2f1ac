/**
 * The hybrid backend: real KVM, mocked SEV. For Linux machines with /dev/kvm but no SEV (most CI
 * runners, and the development machine): VMs, memory slots, vCPUs and guest execution are the real
 * kernel's, and KVM_MEMORY_ENCRYPT_OP, REG/UNREG_REGION, the move/copy capabilities and /dev/sev are
 * served by the mock's kernel and firmware layers over the real guest-memory mappings.
 *
 * Where the hybrid differs from hardware (documented, and what `hostRead` is for):
 * - A real CPU without SEV cannot decrypt, so guest memory stays plaintext: the guest runs and reads
 *   its secret. The firmware keeps track of which bytes are private, and {@link HybridBackend.hostRead}
 *   shows them as the ciphertext a real host would read (the same bytes the pure mock stores).
 * - An SEV or SEV-ES VM type is a default VM in the real kernel; the hybrid enforces the type's rules
 *   itself (KVM_RUN before INIT2 → EINVAL; register access after LAUNCH_UPDATE_VMSA → EINVAL).
 * - LAUNCH_UPDATE_VMSA encrypts a VMSA built from the registers, but the real vCPU keeps running from
 *   its plain registers (there is no VMSA in a non-SEV VM).
 * - Demand pinning (`pinning: 'demand'`) charges pages when a firmware command touches them; the
 *   guest's own first touch (an NPT fault in the kernel) is not seen.
 * - A dead VM (the source of a MOVE) answers EIO to every ioctl, as the kernel's does.
 */
import type {
  Backend,
  BackendFd,
  DevicePath,
  FdKind,
  GuestMapping,
  IoctlCall,
  ReceivedFds,
  VcpuRunHandle,
} from '../../backend/contract.js';
import { ioctlEach } from '../../backend/ioctl-batch.js';
import { errnoError, KvmSevError } from '../../backend/errors.js';
import { NativeBackend } from '../native/native-backend.js';
import { PlaintextMemory } from './common/plaintext-memory.js';
import { RealVmPort } from './common/real-vm-port.js';
import type { SystemView } from '../../backend/system-view.js';
import { HostSystemView } from '../native/host-system-view.js';
import { KVM_CAP, KVM_X86_DEFAULT_VM, KVM_X86_GRP_SEV, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM } from '../../uapi/constants.js';
import { ERRNO } from '../../uapi/errno.js';
import { invalidArgType, invalidArgValue } from '../../uapi/errors.js';
import { ioctlStruct, isIoctlStruct, isMappingRange, type IoctlArg, type IoctlStruct } from '../../uapi/ioctl-arg.js';
import * as ioc from '../../uapi/ioctls.js';
import {
  cpuid2Arg,
  decodeCpuid2,
  decodeMsrs,
  kvm_debugregs,
  kvm_device_attr,
  kvm_enable_cap,
  kvm_guest_debug,
  kvm_regs,
  kvm_sregs,
  kvm_userspace_memory_region,
  kvm_xcrs,
  kvm_xsave,
  msrsArg,
} from '../../uapi/kvm-structs.js';
import type { SevCommandTable } from '../../uapi/sev-command-table.js';
import { kvm_sev_cmd } from '../../uapi/sev-structs.js';
import { RemoteSev, RemoteSevFd, RemoteSevVm, type DaemonStatus } from './remote-sev.js';
import { HypercallDoorbell } from './common/hypercall-doorbell.js';
import { MockHost, ExternalVcpuPort, type SevSnapshot, type MockHostOptions, type VcpuRegisterState } from '../mock/seam.js';

const { EBADF, EFAULT, EINVAL, EIO, ENOENT } = ERRNO;
/** The MSRs a VMSA holds (what LAUNCH_UPDATE_VMSA reads from the vCPU). */
const VMSA_MSRS = [0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102, 0x174, 0x175, 0x176, 0x277];
/** vCPU ioctls that fail on a VM type with protected state once the VMSA is encrypted. */
const PROTECTED_REQUESTS = new Set([
  ioc.KVM_GET_REGS,
  ioc.KVM_SET_REGS,
  ioc.KVM_GET_SREGS,
  ioc.KVM_SET_SREGS,
  ioc.KVM_GET_FPU,
  ioc.KVM_SET_FPU,
  ioc.KVM_GET_XSAVE,
  ioc.KVM_SET_XSAVE,
  ioc.KVM_GET_XCRS,
  ioc.KVM_SET_XCRS,
  ioc.KVM_GET_DEBUGREGS,
  ioc.KVM_SET_DEBUGREGS,
]);
const MOCK_CAPS = new Set<number>([KVM_CAP.VM_TYPES, KVM_CAP.VM_COPY_ENC_CONTEXT_FROM, KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM]);

export interface HybridOptions extends Omit<MockHostOptions, 'memory' | 'firmware'> {
  /** The native backend to use (default: a new one). */
  native?: NativeBackend;
  /**
   * Serve SEV from the shared mock SEV service (a daemon on a Unix socket, started on demand) instead
   * of a mock private to this process, so that SEV state follows a guest to another process (a VMM
   * handoff: a token made here is redeemed there; MOVE from a VM fd received over SCM_RIGHTS). Guest
   * memory of SEV VMs must then be memfd-backed (the daemon maps the memfds).
   */
  shared?: boolean;
  /** The shared service's socket (implies `shared`); default `defaultSevSocket()` (remote-sev.ts): in a folder only this user can reach. */
  sevService?: { socket?: string; spawn?: boolean };
  /**
   * EMULATED hypercalls, for hosts whose KVM never returns a guest's VMMCALL to user space (kvm_pvm):
   * an OUT to `port` becomes the KVM_EXIT_HYPERCALL the kernel would give (see common/hypercall-doorbell.ts).
   */
  emulateHypercalls?: { port: number };
}

/** A hybrid fd: wraps the native (or mock, for /dev/sev) fd so that closes are seen. */
class HybridFd implements BackendFd {
  private done = false;
  constructor(
    readonly inner: BackendFd,
    private readonly onClose?: () => void,
  ) {}
  get kind(): FdKind | 'closed' {
    return this.inner.kind;
  }
  get fd(): number {
    return this.inner.fd;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  get writable(): boolean {
    return this.inner.writable;
  }
  close(): void {
    this.inner.close();
    if (!this.done) {
      this.done = true;
      this.onClose?.();
    }
  }
}

class HybridVcpu extends ExternalVcpuPort {
  constructor(
    readonly vm: HybridVm,
    index: number,
    readonly fd: BackendFd, // native
  ) {
    super(index);
  }
  registerState(): VcpuRegisterState {
    const n = this.vm.backend.native;
    const get = (codec: { arg(v: object): IoctlStruct }, req: number) => {
      const a = codec.arg({});
      n.ioctl(this.fd, req, a);
      return a.bytes;
    };
    const xcrs = kvm_xcrs.decode(get(kvm_xcrs, ioc.KVM_GET_XCRS));
    const dr = kvm_debugregs.decode(get(kvm_debugregs, ioc.KVM_GET_DEBUGREGS));
    const msrs = new Map<number, bigint>();
    const a = msrsArg(VMSA_MSRS.map((index) => ({ index, data: 0n })));
    const got = n.ioctl(this.fd, ioc.KVM_GET_MSRS, a);
    for (const e of decodeMsrs(a.bytes).entries.slice(0, got)) msrs.set(e.index, e.data);
    return {
      regs: get(kvm_regs, ioc.KVM_GET_REGS),
      sregs: get(kvm_sregs, ioc.KVM_GET_SREGS),
      xsave: get(kvm_xsave, ioc.KVM_GET_XSAVE),
      xcr0: xcrs.nr_xcrs > 0 ? xcrs.xcrs[0]!.value : 1n,
      dr6: dr.dr6,
      dr7: dr.dr7,
      db: dr.db,
      msrs,
    };
  }
}

/** A VM of the hybrid: the real VM (`fd` is the native one), and the rules of its SEV type the real kernel does not know. */
class HybridVm extends RealVmPort<HybridVcpu> {
  refs = 1; // the VM fd; each vCPU fd adds one (a vCPU keeps its VM alive)
  needInit: boolean;
  /** Shared mode: why the daemon cannot see this VM's memory (an anonymous slot), if so. */
  unshareable: string | undefined;
  /** KVM_CAP_EXIT_HYPERCALL's mask as enabled on the real VM (for the doorbell emulation). */
  hypercallExitMask = 0n;
  constructor(
    readonly backend: HybridBackend,
    fd: BackendFd,
    vmType: number,
  ) {
    super(backend.mock, fd, vmType);
    this.needInit = vmType !== KVM_X86_DEFAULT_VM;
  }
  get hasProtectedState(): boolean {
    return this.vmType === KVM_X86_SEV_ES_VM;
  }
  unref(): void {
    if (--this.refs === 0) this.sev.destroy();
  }
}

/**
 * Real KVM with the mock's SEV kernel and firmware over the real guest memory, for Linux hosts with
 * /dev/kvm and no SEV (see the module comment for where it differs from hardware). Guest code runs
 * on the real CPU; SEV commands, /dev/sev and the VM types' rules are the mock's. With
 * `{ shared: true }` the processes of one host share one mocked SEV kernel and firmware (a daemon
 * started on demand), so an SEV guest's context can follow a VMM handoff from process to process.
 *
 * ```ts
 * import { Kvm, SevLaunch, SevPlatform } from 'kvm-sev';
 * import { HybridBackend } from 'kvm-sev/hybrid';
 * import { KVM_X86_SEV_VM } from 'kvm-sev/uapi';
 * const hybrid = new HybridBackend(); // real /dev/kvm, mocked SEV
 * using kvm = Kvm.open({ backend: hybrid });
 * using platform = SevPlatform.open(hybrid); // the mock's /dev/sev
 * using vm = kvm.createVm(KVM_X86_SEV_VM);
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * mem.write(0x1000n, new TextEncoder().encode('hello'));
 * const launching = await (await SevLaunch.init(vm, { platform })).launchStart({ policy: 0 });
 * await launching.launchUpdateData(mem); // measured and "encrypted"
 * console.log(new TextDecoder().decode(mem.read(0x1000n, 5))); // hello: without SEV the CPU reads plaintext
 * console.log(Buffer.from(hybrid.hostRead(vm.fd, 0x1000n, 5)).toString('hex')); // what a real host would read: ciphertext
 * ```
 */
export class HybridBackend implements Backend {
  readonly name = 'hybrid' as const;
  readonly native: NativeBackend;
  readonly mock: MockHost;
  /** The firmware's memory controller: plaintext for the real CPU, ciphertext through {@link hostRead}. */
  readonly memory = new PlaintextMemory();
  readonly system: SystemView;
  private readonly vms = new Set<HybridVm>();
  private readonly vmOf = new WeakMap<BackendFd, HybridVm>();
  private readonly vcpuOf = new WeakMap<BackendFd, HybridVcpu>();
  private readonly mockFds = new WeakSet<BackendFd>();
  private mockKvm: BackendFd | undefined;
  /** Shared mode: the connection to the mock SEV service. */
  readonly sevService: RemoteSev | undefined;
  /** Shared mode: VM fds received from another process, held at the service. */
  private readonly adopted = new WeakMap<BackendFd, RemoteSevVm>();
  /** The EMULATED hypercall doorbell, if enabled ({@link HybridOptions.emulateHypercalls}). */
  readonly hypercallDoorbell: HypercallDoorbell | undefined;
  /**
   * A VM or vCPU fd that JS dropped without close() is released when it is collected: the native fd
   * closes, the VM leaves `vms`, and its SEV state goes (in shared mode: the service's fds for it).
   * The held value names only what to release, never the fd object the user held.
   */
  private readonly dropped = new FinalizationRegistry<() => void>((release) => release());

  constructor(options: HybridOptions = {}) {
    const { native, shared, sevService, emulateHypercalls, ...mockOptions } = options;
    this.native = native ?? new NativeBackend();
    this.hypercallDoorbell = emulateHypercalls ? new HypercallDoorbell(this.native, emulateHypercalls.port) : undefined;
    this.mock = new MockHost({ ...mockOptions, memory: this.memory });
    if (shared || sevService) {
      this.sevService = new RemoteSev(this.native, {
        kernel: this.mock.options.kernel,
        processor: this.mock.options.processor.name,
        ...(sevService?.socket ? { socket: sevService.socket } : {}),
        ...(sevService?.spawn !== undefined ? { spawn: sevService.spawn } : {}),
      });
    }
    const host = new HostSystemView();
    const mockSys = (this.mock as { system?: SystemView }).system;
    // The real host, except what the mocked SEV decides: kvm_amd's SEV parameters and /dev/sev.
    this.system = {
      kvmAmdParam: (n) => (mockSys ? mockSys.kvmAmdParam(n) : host.kvmAmdParam(n)),
      kvmModules: () => host.kvmModules(),
      memlockLimit: () => (mockSys ? mockSys.memlockLimit() : host.memlockLimit()),
      capIpcLock: () => (mockSys ? mockSys.capIpcLock() : host.capIpcLock()),
      device: (p) => (p === '/dev/sev' && mockSys ? mockSys.device(p) : host.device(p)),
      cpuFlags: () => host.cpuFlags(),
      cpuInfo: () => host.cpuInfo(),
      kernelRelease: () => host.kernelRelease(),
    };
  }

  private unwrap(fd: BackendFd): BackendFd {
    return fd instanceof HybridFd ? fd.inner : fd;
  }

  open(path: DevicePath, options: { write?: boolean } = {}): BackendFd {
    if (path === '/dev/sev' && this.sevService) {
      if (!this.mock.system.device('/dev/sev').exists) throw errnoError(ENOENT, 'open', undefined, path);
      return new HybridFd(this.sevService.openSev(options.write ?? true));
    }
    if (path === '/dev/sev') {
      const f = this.mock.open(path, options);
      this.mockFds.add(f);
      return new HybridFd(f);
    }
    return new HybridFd(this.native.open(path, options));
  }

  /** The mock's own /dev/kvm: what it answers for SEV capabilities and CPUID. */
  private mockSystemFd(): BackendFd {
    return (this.mockKvm ??= this.mock.open('/dev/kvm'));
  }

  ioctl(fd: BackendFd, request: number, arg?: IoctlArg): number {
    const inner = this.unwrap(fd);
    if (inner.closed) throw errnoError(EBADF, 'ioctl', ioc.ioctlByRequest(request)?.name); // EBADF, as the kernel
    if (this.mockFds.has(inner)) return this.mock.ioctl(inner, request, arg);
    if (inner instanceof RemoteSevFd) return inner.service.sevIoctl(inner, request, arg);
    const vm = this.vmOf.get(inner);
    if (vm) return this.vmIoctl(vm, inner, request, arg, false) as number;
    const vcpu = this.vcpuOf.get(inner);
    if (vcpu) {
      if (vcpu.vm.dead) throw errnoError(EIO, 'ioctl', ioc.ioctlByRequest(request)?.name);
      if (vcpu.vm.hasProtectedState && vcpu.protectedOn && PROTECTED_REQUESTS.has(request))
        throw errnoError(EINVAL, 'ioctl', ioc.ioctlByRequest(request)?.name);
      const r = this.native.ioctl(inner, request, arg);
      if (request === ioc.KVM_SET_GUEST_DEBUG && isIoctlStruct(arg))
        vcpu.guestDebugOn = (kvm_guest_debug.decode(arg.bytes).control & 1) !== 0;
      return r;
    }
    if (inner.kind === 'kvm') return this.systemIoctl(inner, request, arg);
    return this.native.ioctl(inner, request, arg);
  }

  private systemIoctl(inner: BackendFd, request: number, arg?: IoctlArg): number {
    if (request === ioc.KVM_CHECK_EXTENSION && typeof arg === 'number' && MOCK_CAPS.has(arg))
      return this.mock.ioctl(this.mockSystemFd(), request, arg);
    if (
      (request === ioc.KVM_GET_DEVICE_ATTR || request === ioc.KVM_HAS_DEVICE_ATTR) &&
      isIoctlStruct(arg) &&
      kvm_device_attr.decode(arg.bytes).group === KVM_X86_GRP_SEV
    ) {
      return this.mock.ioctl(this.mockSystemFd(), request, arg);
    }
    const r = this.native.ioctl(inner, request, arg);
    if (request === ioc.KVM_GET_SUPPORTED_CPUID && isIoctlStruct(arg)) this.patchSevLeaf(arg);
    return r;
  }

  /** CPUID 0x8000001F as the mocked processor has it (the real KVM reports zeros without SEV). */
  private patchSevLeaf(arg: IoctlStruct): void {
    const mine = cpuid2Arg(64);
    this.mock.ioctl(this.mockSystemFd(), ioc.KVM_GET_SUPPORTED_CPUID, mine);
    const leaf = decodeCpuid2(mine.bytes).entries.find((e) => e.function === 0x8000001f);
    if (!leaf) return;
    const n = new DataView(arg.bytes.buffer, arg.bytes.byteOffset).getUint32(0, true);
    for (let i = 0; i < n; i++) {
      const at = arg.bytes.byteOffset + 8 + i * 40;
      const dv = new DataView(arg.bytes.buffer, at, 40);
      if (dv.getUint32(0, true) !== 0x8000001f) continue;
      dv.setUint32(12, leaf.eax, true);
      dv.setUint32(16, leaf.ebx, true);
      dv.setUint32(20, leaf.ecx, true);
      dv.setUint32(24, leaf.edx, true);
    }
  }

  private vmIoctl(vm: HybridVm, inner: BackendFd, request: number, arg: IoctlArg | undefined, async: boolean): number | Promise<number> {
    const name = ioc.ioctlByRequest(request)?.name;
    if (vm.dead) throw errnoError(EIO, 'ioctl', name);
    if (vm.unshareable && (request === ioc.KVM_MEMORY_ENCRYPT_OP || request === ioc.KVM_MEMORY_ENCRYPT_REG_REGION)) {
      throw new KvmSevError('ERR_KVM_SEV_NOT_MEMFD', vm.unshareable);
    }
    switch (request) {
      case ioc.KVM_MEMORY_ENCRYPT_OP: {
        const id = isIoctlStruct(arg) ? kvm_sev_cmd.decode(arg.bytes).id : -1;
        const done = (r: number) => {
          if (this.mock.sevCommands.commandName(id) === 'INIT2') vm.needInit = false;
          return r;
        };
        return async ? vm.sev.ioctlAsync(request, arg).then(done) : done(vm.sev.ioctl(request, arg));
      }
      case ioc.KVM_MEMORY_ENCRYPT_REG_REGION:
      case ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION:
        return async ? vm.sev.ioctlAsync(request, arg) : vm.sev.ioctl(request, arg);
      case ioc.KVM_ENABLE_CAP: {
        if (!isIoctlStruct(arg)) break;
        const cap = kvm_enable_cap.decode(arg.bytes);
        if (cap.cap !== KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM && cap.cap !== KVM_CAP.VM_COPY_ENC_CONTEXT_FROM) break;
        if (cap.flags !== 0) throw errnoError(EINVAL, 'ioctl', name);
        const srcFd = Number(cap.args[0]);
        const src = [...this.vms].find((v) => !v.fd.closed && v.fd.fd === srcFd);
        const move = cap.cap === KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM;
        if (vm.sev instanceof RemoteSevVm) {
          // Shared mode: an attached VM, a VM fd adopted from another process, or any fd the daemon
          // resolves by its open file (kcmp).
          const other = src ? src.sev : this.adoptedByNumber(srcFd);
          vm.sev.capFrom(move ? 'move' : 'copy', (other as RemoteSevVm | BackendFd | undefined) ?? null);
        } else if (move) vm.sev.moveEncContextFrom(src ? src.sev : null);
        else vm.sev.copyEncContextFrom(src ? src.sev : null);
        if (move) vm.needInit = false; // the moved context is active here: KVM_RUN is allowed
        return 0;
      }
      case ioc.KVM_CHECK_EXTENSION:
        if (typeof arg === 'number' && MOCK_CAPS.has(arg)) return this.mock.ioctl(this.mockSystemFd(), request, arg);
        break;
    }
    if (request === ioc.KVM_ENABLE_CAP && isIoctlStruct(arg) && !async) {
      const c = kvm_enable_cap.decode(arg.bytes);
      const r = this.native.ioctl(inner, request, arg);
      if (c.cap === KVM_CAP.EXIT_HYPERCALL) vm.hypercallExitMask = c.args[0]!;
      return r;
    }
    const r = async ? this.native.ioctlAsync(inner, request, arg) : this.native.ioctl(inner, request, arg);
    // region2 starts with region's fields (slot, flags, gpa, size, userspace_addr).
    if ((request === ioc.KVM_SET_USER_MEMORY_REGION || request === ioc.KVM_SET_USER_MEMORY_REGION2) && isIoctlStruct(arg))
      this.recordSlot(vm, arg);
    return r;
  }

  private recordSlot(vm: HybridVm, arg: IoctlStruct): void {
    const r = kvm_userspace_memory_region.decode(arg.bytes);
    const remote = vm.sev instanceof RemoteSevVm ? vm.sev : undefined;
    if (r.memory_size === 0n) {
      vm.slots.delete(r.slot);
      remote?.service.slot(remote, r.slot, 0n, 0, undefined, 0);
      return;
    }
    const target = arg.fixups.find((f) => f.offset === kvm_userspace_memory_region.offsetOf('userspace_addr'))?.target;
    if (!isMappingRange(target)) return;
    vm.slots.set(r.slot, {
      gpa: r.guest_phys_addr,
      size: Number(r.memory_size),
      mapping: target.mapping as GuestMapping,
      offset: target.offset,
    });
    if (!remote) return;
    if (!remote.service.isShareable(target.mapping)) {
      vm.unshareable = `memory slot ${r.slot} is anonymous memory, which the shared mock SEV service (another process) cannot reach: back SEV guest memory by a memfd (addMemory({ memfd: true }))`;
      return;
    }
    remote.service.slot(remote, r.slot, r.guest_phys_addr, Number(r.memory_size), target.mapping, target.offset);
  }

  /** Shared mode: a VM fd received from another process, by its number. */
  private adoptedByNumber(n: number): RemoteSevVm | undefined {
    for (const f of this.received) if (!f.closed && f.fd === n) return this.adopted.get(f);
    return undefined;
  }
  private readonly received = new Set<BackendFd>();

  ioctlAsync(fd: BackendFd, request: number, arg?: IoctlArg): Promise<number> {
    try {
      const inner = this.unwrap(fd);
      if (inner.closed) throw errnoError(EBADF, 'ioctl', ioc.ioctlByRequest(request)?.name);
      if (this.mockFds.has(inner)) return this.mock.ioctlAsync(inner, request, arg);
      if (inner instanceof RemoteSevFd) return Promise.resolve(inner.service.sevIoctl(inner, request, arg));
      const vm = this.vmOf.get(inner);
      if (vm) return Promise.resolve(this.vmIoctl(vm, inner, request, arg, true));
      if (this.vcpuOf.has(inner) || inner.kind === 'kvm') return Promise.resolve(this.ioctl(fd, request, arg));
      return this.native.ioctlAsync(inner, request, arg);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // The SEV half is the mock's kernel (in shared mode the service runs the same profile): it decides.
  sevCommandTable(vm: BackendFd): SevCommandTable {
    if (!(vm instanceof HybridFd)) throw invalidArgType('vm', 'an fd of this hybrid backend', vm);
    if (vm.closed) throw errnoError(EBADF, 'ioctl');
    if (vm.kind !== 'vm') throw invalidArgValue('vm', vm.kind, 'must be a VM fd (KVM_SEV commands go to a VM)');
    return this.mock.sevCommands;
  }
  setSevCommandTable(vm: BackendFd, table: SevCommandTable): void {
    this.sevCommandTable(vm);
    this.mock.checkSevCommandTable(table);
  }

  ioctlBatch(calls: readonly IoctlCall[]): number[] {
    return ioctlEach(this, calls);
  }
  ioctlFd(fd: BackendFd, request: number, arg?: IoctlArg): BackendFd {
    const inner = this.unwrap(fd);
    if (inner.closed) throw errnoError(EBADF, 'ioctl', ioc.ioctlByRequest(request)?.name);
    if (this.mockFds.has(inner)) return this.mock.ioctlFd(inner, request, arg);
    if (request === ioc.KVM_CREATE_VM) {
      const type = typeof arg === 'number' ? arg : 0;
      let realType = type;
      if (type === KVM_X86_SEV_VM || type === KVM_X86_SEV_ES_VM) {
        // Accepted if the mocked kernel offers the type; the real kernel then makes a default VM.
        const mask = this.mock.ioctl(this.mockSystemFd(), ioc.KVM_CHECK_EXTENSION, KVM_CAP.VM_TYPES);
        if (!(mask & (1 << type))) throw errnoError(EINVAL, 'ioctl', 'KVM_CREATE_VM');
        realType = KVM_X86_DEFAULT_VM;
      }
      const nfd = this.native.ioctlFd(inner, request, realType);
      const vm = new HybridVm(this, nfd, type);
      try {
        vm.sev = this.sevService ? this.sevService.attach(type, nfd, vm) : this.mock.sev.attach(vm);
      } catch (e) {
        nfd.close();
        throw e;
      }
      this.vms.add(vm);
      this.vmOf.set(nfd, vm);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        this.vms.delete(vm);
        vm.unref();
      };
      const fd = new HybridFd(nfd, release);
      this.dropped.register(fd, () => {
        nfd.close();
        release();
      });
      return fd;
    }
    if (request === ioc.KVM_CREATE_VCPU) {
      const vm = this.vmOf.get(inner);
      if (vm?.dead) throw errnoError(EIO, 'ioctl', 'KVM_CREATE_VCPU');
      const nfd = this.native.ioctlFd(inner, request, arg);
      if (!vm) return new HybridFd(nfd);
      const v = new HybridVcpu(vm, vm.vcpuList.length, nfd);
      vm.vcpuList.push(v);
      if (vm.sev instanceof RemoteSevVm) vm.sev.service.addVcpu(vm.sev);
      vm.refs++;
      this.vcpuOf.set(nfd, v);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        vm.unref();
      };
      const fd = new HybridFd(nfd, release);
      this.dropped.register(fd, () => {
        nfd.close();
        release();
      });
      return fd;
    }
    return this.native.ioctlFd(inner, request, arg);
  }

  mmapAnonymous(size: number): GuestMapping {
    return this.native.mmapAnonymous(size);
  }
  memfdCreate(name: string, size: number): BackendFd {
    return new HybridFd(this.native.memfdCreate(name, size));
  }
  mmapShared(memfd: BackendFd, size: number, offset?: number): GuestMapping {
    const inner = this.unwrap(memfd);
    const m = this.native.mmapShared(inner, size, offset);
    this.sevService?.noteMapping(m, inner, offset ?? 0);
    return m;
  }

  createRunner(vcpuFd: BackendFd, mmapSize: number): VcpuRunHandle {
    const inner = this.unwrap(vcpuFd);
    const v = this.vcpuOf.get(inner);
    const real = this.native.createRunner(inner, mmapSize);
    const r = this.hypercallDoorbell && v ? this.hypercallDoorbell.wrap(real, inner, () => v.vm.hypercallExitMask) : real;
    if (!v) return r;
    // The kernel's rules for SEV VM types, which the real (default) VM does not know.
    const check = () => {
      if (v.vm.dead) throw errnoError(EIO, 'ioctl', 'KVM_RUN');
      if (v.vm.needInit) throw errnoError(EINVAL, 'ioctl', 'KVM_RUN');
    };
    return {
      get runArea() {
        return r.runArea;
      },
      get running() {
        return r.running;
      },
      get closed() {
        return r.closed;
      },
      run: () => {
        try {
          check();
        } catch (e) {
          return Promise.reject(e);
        }
        return r.run();
      },
      runSync: () => {
        check();
        return r.runSync();
      },
      kick: () => r.kick(),
      close: () => r.close(),
    };
  }

  // eventfds and stats fds are the real kernel's (irqfd/ioeventfd go to the real KVM).
  eventfd(options?: { initval?: number; semaphore?: boolean }): BackendFd {
    return new HybridFd(this.native.eventfd(options));
  }
  eventfdWrite(fd: BackendFd, value?: bigint): void {
    this.native.eventfdWrite(this.unwrap(fd), value);
  }
  eventfdRead(fd: BackendFd): bigint {
    return this.native.eventfdRead(this.unwrap(fd));
  }
  eventfdWait(fd: BackendFd): Promise<bigint> {
    return this.native.eventfdWait(this.unwrap(fd));
  }
  eventfdCancel(fd: BackendFd): void {
    this.native.eventfdCancel(this.unwrap(fd));
  }
  pread(fd: BackendFd, into: Uint8Array, position: number): number {
    return this.native.pread(this.unwrap(fd), into, position);
  }

  socketPair(): [BackendFd, BackendFd] {
    const [a, b] = this.native.socketPair();
    return [new HybridFd(a), new HybridFd(b)];
  }
  unixListen(path: string): BackendFd {
    return new HybridFd(this.native.unixListen(path));
  }
  unixConnect(path: string): BackendFd {
    return new HybridFd(this.native.unixConnect(path));
  }
  async unixAccept(listener: BackendFd): Promise<BackendFd> {
    return new HybridFd(await this.native.unixAccept(this.unwrap(listener)));
  }
  sendFds(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): Promise<number> {
    return this.native.sendFds(
      this.unwrap(socket),
      data,
      fds.map((f) => this.unwrap(f)),
    );
  }
  async recvFds(socket: BackendFd, maxBytes: number, maxFds?: number): Promise<ReceivedFds> {
    const r = await this.native.recvFds(this.unwrap(socket), maxBytes, maxFds);
    return {
      data: r.data,
      fds: r.fds.map((f) => {
        // Shared mode: a VM fd from another process holds its VM at the service too (the kernel keeps
        // a VM while any fd refers to it), until this fd is closed or this process dies.
        const held = f.kind === 'vm' && this.sevService && !this.sevService.closed ? this.sevService.adopt(f) : undefined;
        if (!held) return new HybridFd(f);
        this.adopted.set(f, held);
        this.received.add(f);
        return new HybridFd(f, () => {
          this.received.delete(f);
          held.destroy();
        });
      }),
    };
  }

  /**
   * What a real host would read in guest memory: private (encrypted) bytes as ciphertext, shared
   * bytes as they are. The guest itself (and `GuestMemory` reads) see plaintext in the hybrid.
   */
  hostRead(vmFd: BackendFd, gpa: bigint, length: number): Uint8Array {
    const vm = this.vmOf.get(this.unwrap(vmFd));
    if (!vm) throw invalidArgType('vmFd', 'a VM fd of this hybrid backend', vmFd);
    if (this.sevService)
      throw new KvmSevError(
        'ERR_KVM_SEV_UNSUPPORTED',
        'hostRead is not available with the shared mock SEV service (the private-byte map lives in the daemon)',
      );
    for (const s of vm.slots.values()) {
      if (gpa < s.gpa || gpa + BigInt(length) > s.gpa + BigInt(s.size)) continue;
      // Through the mock's address space: the same live bytes the firmware wrote (the controller
      // tracks private bytes per backing store).
      const um = this.mock.memory;
      const uaddr = um.addressOf(s.mapping) + BigInt(s.offset) + (gpa - s.gpa);
      const out = new Uint8Array(length);
      let at = 0;
      for (const seg of um.view(uaddr, length)) {
        out.set(this.memory.hostView({ paddr: gpa + BigInt(at), bytes: seg.region.bytes(seg.offset, seg.length) }), at);
        at += seg.length;
      }
      return out;
    }
    throw errnoError(EFAULT, 'read', undefined, undefined, `[0x${gpa.toString(16)}, +${length}) is not in a memory slot`);
  }

  /** For tests and invariants: the mocked SEV's state. */
  get sevSnapshot(): SevSnapshot {
    return this.sevService ? this.sevService.status().snapshot : this.mock.sev.snapshot();
  }

  /** Shared mode: the service's state (clients, VMs and their holders, the SEV snapshot). */
  sevServiceStatus(): DaemonStatus {
    if (!this.sevService) throw new KvmSevError('ERR_KVM_SEV_UNSUPPORTED', 'this hybrid backend does not use the shared mock SEV service');
    return this.sevService.status();
  }

  /** @internal */
  static wrapStruct(bytes: Uint8Array): IoctlStruct {
    return ioctlStruct(bytes);
  }
}

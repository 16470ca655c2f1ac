/**
 * The mock kernel: the files fds refer to, and the ioctl handlers of /dev/kvm, VM and vCPU fds
 * (virt/kvm/kvm_main.c, arch/x86/kvm/x86.c as they answer on an AMD host), with /dev/sev handed to
 * the PSP driver and KVM_MEMORY_ENCRYPT_* to the SEV layer. Handlers read and write the caller's
 * structs through user memory, like copy_from_user / copy_to_user, and fail with KernelErrno.
 * Requests routed to the wrong kind of fd answer what the kernel's default case does:
 * /dev/kvm EINVAL, VM fds ENOTTY, vCPU fds EINVAL, /dev/sev EINVAL.
 */
import { encodeArray } from '../../../uapi/codec.js';
import { KVM_API_VERSION, KVM_CAP } from '../../../uapi/constants.js';
import type { IoctlDef } from '../../../uapi/ioctls.js';
import {
  kvm_device_attr,
  kvm_enable_cap,
  kvm_fpu,
  kvm_lapic_state,
  kvm_mp_state,
  kvm_regs,
  kvm_sregs,
  kvm_userspace_memory_region,
  kvm_vcpu_events,
  kvm_xcrs,
  kvm_xsave,
  kvm_debugregs,
  kvm_guest_debug,
  u64_value,
  kvm_cpuid_entry2,
} from '../../../uapi/kvm-structs.js';
import { KernelFile } from './common/files.js';
import { E, fail } from './common/errno.js';
import type { Backing } from './common/mapping.js';
import { MockSevKernel } from './svm/sev.js';
import { checkExtension, MSR_FEATURE_LIST, MSR_INDEX_LIST, SUPPORTED_XCR0, supportedCpuid, type CpuidEntry } from './kvm/tables.js';
import type { KernelProfile } from './common/kernel-profile.js';
import { validSregs } from './kvm/sregs.js';
import type { MockVcpu } from './kvm/vcpu.js';
import { MockVm } from './kvm/vm.js';
import type { SevDriver } from './ccp/sev-dev.js';
import type { UserMemory } from './common/user-memory.js';
import type { KvmMutex } from './common/kvm-mutex.js';
import { kvm_userspace_memory_region2 } from '../../../uapi/kvm-structs.js';
import {
  DeviceFile,
  deviceIoctl,
  vcpuStatsFile,
  vmmEnableCap,
  vmmVcpuIoctl,
  vmmVmFile,
  vmmVmIoctl,
  type IoctlContext,
} from './kvm/vmm-ioctls.js';

export class DevKvmFile extends KernelFile {
  readonly kind = 'kvm' as const;
  readonly path = '/dev/kvm';
  protected release(): void {}
}

export class DevSevFile extends KernelFile {
  readonly kind = 'sev' as const;
  readonly path = '/dev/sev';
  override readonly writable: boolean;
  constructor(writable: boolean) {
    super();
    this.writable = writable;
  }
  protected release(): void {}
}

export class VmFile extends KernelFile {
  readonly kind = 'vm' as const;
  readonly path = 'anon_inode:kvm-vm';
  readonly vm: MockVm;
  constructor(vm: MockVm) {
    super();
    this.vm = vm;
    vm.hold();
  }
  protected release(): void {
    this.vm.release();
  }
}

export class VcpuFile extends KernelFile {
  readonly kind = 'vcpu' as const;
  readonly path: string;
  readonly vm: MockVm;
  readonly vcpu: MockVcpu;
  constructor(vm: MockVm, vcpu: MockVcpu) {
    super();
    this.vm = vm;
    this.vcpu = vcpu;
    this.path = `anon_inode:kvm-vcpu:${vcpu.id}`;
    vm.hold();
  }
  protected release(): void {
    this.vm.release();
  }
}

export class MemfdFile extends KernelFile {
  readonly kind = 'memfd' as const;
  readonly path: string;
  readonly backing: Backing;
  constructor(name: string, backing: Backing) {
    super();
    this.path = `/memfd:${name}`;
    this.backing = backing;
    backing.fileRefs++;
  }
  protected release(): void {
    const b = this.backing;
    if (--b.fileRefs === 0 && b.mappings === 0) b.free();
  }
}

/** What KVM_GET_DEVICE_ATTR answers for group KVM_X86_GRP_SEV. */
interface SevAttrs {
  vmsaFeatures: bigint;
  snpPolicyBits: bigint;
  snp: boolean;
}

export interface KernelConfig {
  readonly kernel: KernelProfile;
  readonly mem: UserMemory;
  readonly driver: SevDriver;
  readonly sev: MockSevKernel;
  readonly cpuid: CpuidEntry[];
  readonly vmTypesMask: number;
  readonly sevAttrs: SevAttrs;
  /** Runs a VM's destruction (the host traces the firmware commands it issues). */
  readonly onDestroy: (what: () => void) => void;
  /** The open file behind an fd number (irqfd, ioeventfd and VFIO attributes name fds). */
  readonly fileOf: (fd: number) => KernelFile | undefined;
}

/**
 * One ioctl as the kernel runs it: what it did on entry (checks that never sleep), the kvm->lock
 * mutexes it then takes in order, and the rest. The host runs it synchronously (ioctl) or lets other
 * calls interleave while it waits for the mutexes and while the firmware works (ioctlAsync).
 */
export interface KernelCall {
  /** kvm->lock of the VMs involved, in the order the kernel takes them. */
  readonly mutexes: readonly KvmMutex[];
  /** An async call lets other calls run before it takes its mutexes (MOVE/COPY after sev_lock_two_vms() marked both VMs). */
  readonly yields: boolean;
  /** The handler, with the mutexes held (throws KernelErrno). */
  run(): number | KernelFile;
  /** After the mutexes are released (sev_unlock_two_vms()). */
  done(): void;
}

/** The int / pointer argument of one ioctl. */
export interface KArg {
  /** The integer argument (KVM_CREATE_VM's type, KVM_CHECK_EXTENSION's cap). */
  readonly int: bigint;
  /** The struct's user address (0n: NULL). */
  readonly addr: bigint;
}

const TSC_KHZ = 2_450_000;
const KVM_RUN_MMAP_SIZE = 3 * 4096;

export class MockKernel {
  readonly cfg: KernelConfig;

  /** What the VMM-family handlers (kvm/vmm-ioctls.ts) use of this kernel. */
  private readonly ctx: IoctlContext;

  constructor(cfg: KernelConfig) {
    this.cfg = cfg;
    this.ctx = {
      bytes: (addr, size) => this.bytes(addr, size),
      write: (addr, b) => this.write(addr, b),
      fileOf: (fd) => cfg.fileOf(fd),
      nowNs: () => process.hrtime.bigint(),
      hostTscKhz: TSC_KHZ,
    };
  }

  private get legacy(): boolean {
    return this.cfg.kernel === 'local-migration-2021';
  }

  private read<T>(codec: { size: number; decode(b: Uint8Array): T }, addr: bigint): T {
    return codec.decode(this.cfg.mem.copyFromUser(addr, codec.size));
  }

  private bytes(addr: bigint, size: number): Uint8Array {
    return this.cfg.mem.copyFromUser(addr, size);
  }

  private write(addr: bigint, b: Uint8Array): void {
    this.cfg.mem.copyToUser(addr, b);
  }

  /**
   * The entry of an ioctl (throws KernelErrno for what fails before any lock): a dead VM answers EIO
   * at once (kvm_vm_ioctl()); KVM_MEMORY_ENCRYPT_OP, the region ioctls and KVM_CREATE_VCPU take the
   * VM's kvm->lock; MOVE and COPY (KVM_ENABLE_CAP 206 / 197) resolve the source fd and mark both VMs
   * (sev_lock_two_vms(): EBADF, EINVAL, EBUSY), then take the destination's and the source's.
   */
  begin(file: KernelFile, def: IoctlDef, a: KArg, wantFd: boolean): KernelCall {
    // kvm_vm_ioctl() checks kvm->vm_dead once, on entry: a call that then waits for kvm->lock while a
    // MOVE takes the VM's context runs on (and finds no SEV guest).
    const entered = file.kind === 'vm';
    const plain = (mutexes: KvmMutex[]): KernelCall => ({
      mutexes,
      yields: false,
      run: () =>
        wantFd || def.name === 'KVM_CREATE_DEVICE' ? (this.ioctlFile(file, def, a, entered) ?? 0) : this.ioctl(file, def, a, entered),
      done: () => {},
    });
    if (file.kind !== 'vm') return plain([]);
    const vm = (file as VmFile).vm;
    if (vm.dead) fail(E.EIO, 'the VM is dead (its encryption context moved away)');
    switch (def.name) {
      case 'KVM_MEMORY_ENCRYPT_OP':
      case 'KVM_MEMORY_ENCRYPT_REG_REGION':
      case 'KVM_MEMORY_ENCRYPT_UNREG_REGION':
      case 'KVM_CREATE_VCPU':
        return plain([vm.sev.lock]);
      case 'KVM_ENABLE_CAP': {
        if (this.legacy) break;
        const c = this.read(kvm_enable_cap, a.addr);
        if (c.flags !== 0 || (c.cap !== KVM_CAP.VM_COPY_ENC_CONTEXT_FROM && c.cap !== KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM)) break;
        const srcFd = c.args[0]! > 0x7fffffffn ? -1 : Number(c.args[0]!);
        const two = this.cfg.sev.beginEncContext(vm.sev, srcFd, c.cap === KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM);
        return {
          mutexes: [vm.sev.lock, two.src.lock],
          yields: true,
          run: () => {
            two.run();
            return 0;
          },
          done: () => two.done(),
        };
      }
    }
    return plain([]);
  }

  /** An ioctl that returns an int (`entered`: the VM fd's dead check is done). */
  ioctl(file: KernelFile, def: IoctlDef, a: KArg, entered = false): number {
    switch (file.kind) {
      case 'kvm':
        return this.sys(def.name, a);
      case 'vm':
        return this.vmIoctl((file as VmFile).vm, def.name, a, entered);
      case 'vcpu':
        return this.vcpuIoctl(file as VcpuFile, def.name, a);
      case 'sev':
        if (def.name !== 'SEV_ISSUE_CMD') fail(E.EINVAL, 'not SEV_ISSUE_CMD');
        return this.cfg.driver.ioctl(this.cfg.mem, file.writable, a.addr);
      case 'device':
        return deviceIoctl(this.ctx, file as DeviceFile, def.name, a);
      default:
        return fail(E.ENOTTY);
    }
  }

  /** KVM_CREATE_VM / KVM_CREATE_VCPU / KVM_CREATE_DEVICE / KVM_CREATE_GUEST_MEMFD / KVM_GET_STATS_FD: the new file (null: none made). */
  ioctlFile(file: KernelFile, def: IoctlDef, a: KArg, entered = false): KernelFile | null {
    if (def.name === 'KVM_GET_STATS_FD' && file.kind === 'vcpu') return vcpuStatsFile((file as VcpuFile).vcpu);
    if (file.kind === 'vm' && ['KVM_CREATE_DEVICE', 'KVM_CREATE_GUEST_MEMFD', 'KVM_GET_STATS_FD'].includes(def.name)) {
      const vm = (file as VmFile).vm;
      if (vm.dead && !entered) fail(E.EIO, 'the VM is dead');
      if (this.legacy && def.name === 'KVM_CREATE_GUEST_MEMFD') fail(E.ENOTTY);
      return vmmVmFile(this.ctx, vm, def.name, a)!;
    }
    if (def.name === 'KVM_CREATE_VM') {
      if (file.kind !== 'kvm') fail(file.kind === 'vm' ? E.ENOTTY : E.EINVAL);
      return this.createVm(a.int);
    }
    if (file.kind === 'vm') {
      const vm = (file as VmFile).vm;
      if (vm.dead && !entered) fail(E.EIO, 'the VM is dead');
      if (a.int > 0xffffffffn) fail(E.EINVAL);
      return new VcpuFile(vm, vm.createVcpu(Number(a.int)));
    }
    return fail(E.EINVAL);
  }

  // ---- /dev/kvm ----

  private createVm(type: bigint): VmFile {
    if (this.legacy ? type !== 0n : type >= 32n || !(this.cfg.vmTypesMask & (1 << Number(type))))
      fail(E.EINVAL, `VM type ${type} is not supported`);
    const limits = this.legacy ? { maxVcpus: 288, maxVcpuIds: 1023 } : { maxVcpus: 4096, maxVcpuIds: 16384 };
    const vm = new MockVm(Number(type), limits, (v) => this.cfg.onDestroy(() => this.cfg.sev.destroy(v.sev)));
    vm.sev = this.cfg.sev.attach(vm);
    return new VmFile(vm);
  }

  private sys(name: string, a: KArg): number {
    switch (name) {
      case 'KVM_GET_API_VERSION':
        return KVM_API_VERSION;
      case 'KVM_CHECK_EXTENSION':
        return this.checkExtension(a.int);
      case 'KVM_GET_VCPU_MMAP_SIZE':
        return KVM_RUN_MMAP_SIZE;
      case 'KVM_GET_SUPPORTED_CPUID': {
        const nent = new DataView(this.bytes(a.addr, 8).buffer).getUint32(0, true);
        const list = this.cfg.cpuid;
        if (nent < list.length) fail(E.E2BIG, `${list.length} CPUID entries`);
        this.write(a.addr + 8n, encodeArray(kvm_cpuid_entry2, list));
        const hdr = new Uint8Array(4);
        new DataView(hdr.buffer).setUint32(0, list.length, true);
        this.write(a.addr, hdr);
        return 0;
      }
      case 'KVM_GET_MSR_INDEX_LIST':
      case 'KVM_GET_MSR_FEATURE_INDEX_LIST': {
        const list = name === 'KVM_GET_MSR_INDEX_LIST' ? MSR_INDEX_LIST : MSR_FEATURE_LIST;
        const n = new DataView(this.bytes(a.addr, 4).buffer).getUint32(0, true);
        const hdr = new Uint8Array(4);
        new DataView(hdr.buffer).setUint32(0, list.length, true);
        this.write(a.addr, hdr); // written before the E2BIG check, as KVM does
        if (n < list.length) fail(E.E2BIG);
        const body = new Uint8Array(4 * list.length);
        list.forEach((m, i) => new DataView(body.buffer).setUint32(4 * i, m, true));
        this.write(a.addr + 4n, body);
        return 0;
      }
      case 'KVM_GET_DEVICE_ATTR':
      case 'KVM_HAS_DEVICE_ATTR': {
        if (this.legacy) fail(E.EINVAL); // no /dev/kvm device attributes in the 2021 kernel
        const attr = this.read(kvm_device_attr, a.addr);
        const v = this.sysAttr(attr.group, attr.attr);
        if (v === undefined) fail(E.ENXIO, `no attribute ${attr.group}/${attr.attr}`);
        if (name === 'KVM_GET_DEVICE_ATTR') this.write(attr.addr, u64_value.encode({ value: v }));
        return 0;
      }
      default:
        return fail(E.EINVAL);
    }
  }

  private sysAttr(group: number, attr: bigint): bigint | undefined {
    const s = this.cfg.sevAttrs;
    if (group === 0 && attr === 0n) return SUPPORTED_XCR0; // KVM_X86_XCOMP_GUEST_SUPP
    if (group !== 1) return undefined;
    if (attr === 0n) return s.vmsaFeatures;
    if (this.cfg.kernel === '7.2' && attr === 1n) return s.snpPolicyBits;
    if (this.cfg.kernel === '7.2' && attr === 2n) return s.snp ? 1n : 0n;
    return undefined;
  }

  private checkExtension(cap: bigint, vmType?: number): number {
    if (cap > 0xffffffffn) return 0;
    return checkExtension(Number(cap), {
      kernel: this.cfg.kernel,
      vmTypesMask: this.cfg.vmTypesMask,
      ...(vmType !== undefined ? { vmType } : {}),
    });
  }

  // ---- VM fds ----

  private vmIoctl(vm: MockVm, name: string, a: KArg, entered: boolean): number {
    if (vm.dead && !entered) fail(E.EIO, 'the VM is dead (its encryption context moved away)');
    const sev = this.cfg.sev;
    switch (name) {
      case 'KVM_CHECK_EXTENSION':
        return this.checkExtension(a.int, vm.vmType);
      case 'KVM_SET_USER_MEMORY_REGION': {
        const r = this.read(kvm_userspace_memory_region, a.addr);
        const seg = r.userspace_addr ? this.cfg.mem.trySegments(r.userspace_addr, 1)?.[0] : undefined;
        vm.setMemoryRegion({
          slot: r.slot,
          flags: r.flags,
          gpa: r.guest_phys_addr,
          size: r.memory_size,
          uaddr: r.userspace_addr,
          mapping: seg?.region.mapping,
        });
        return 0;
      }
      case 'KVM_SET_TSS_ADDR':
        if (a.int > 0xffffffffn - 3n * 4096n + 1n) fail(E.EINVAL);
        vm.tssAddr = a.int;
        return 0;
      case 'KVM_SET_IDENTITY_MAP_ADDR':
        this.read(u64_value, a.addr);
        if (vm.created > 0) fail(E.EEXIST, 'vCPUs exist');
        vm.identityMapSet = true;
        return 0;
      case 'KVM_CREATE_IRQCHIP':
        if (vm.irqchip) fail(E.EEXIST);
        if (vm.created > 0) fail(E.EINVAL, 'vCPUs exist');
        vm.makeIrqchip(false);
        return 0;
      case 'KVM_SET_USER_MEMORY_REGION2': {
        if (this.legacy) fail(E.ENOTTY);
        const r = this.read(kvm_userspace_memory_region2, a.addr);
        if (r.flags & 4) fail(E.EINVAL, 'KVM_MEM_GUEST_MEMFD: the mock models no private memory'); // no guest_memfd binding
        const seg = r.userspace_addr ? this.cfg.mem.trySegments(r.userspace_addr, 1)?.[0] : undefined;
        vm.setMemoryRegion({
          slot: r.slot,
          flags: r.flags,
          gpa: r.guest_phys_addr,
          size: r.memory_size,
          uaddr: r.userspace_addr,
          mapping: seg?.region.mapping,
        });
        return 0;
      }
      case 'KVM_ENABLE_CAP': {
        const c = this.read(kvm_enable_cap, a.addr);
        if (c.flags !== 0) fail(E.EINVAL, 'flags must be 0');
        const srcFd = c.args[0]! > 0x7fffffffn ? -1 : Number(c.args[0]!);
        if (!this.legacy && c.cap === KVM_CAP.VM_COPY_ENC_CONTEXT_FROM) sev.copyFrom(vm.sev, srcFd);
        else if (!this.legacy && c.cap === KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM) sev.moveFrom(vm.sev, srcFd);
        else if (vmmEnableCap(vm, c, this.legacy) === undefined) fail(E.EINVAL, `cap ${c.cap} cannot be enabled`);
        return 0;
      }
      case 'KVM_MEMORY_ENCRYPT_OP':
        return sev.memEncOp(vm.sev, a.addr);
      case 'KVM_MEMORY_ENCRYPT_REG_REGION':
        return sev.regRegion(vm.sev, a.addr);
      case 'KVM_MEMORY_ENCRYPT_UNREG_REGION':
        return sev.unregRegion(vm.sev, a.addr);
      default:
        return vmmVmIoctl(this.ctx, vm, name, a, this.legacy) ?? fail(E.ENOTTY);
    }
  }

  // ---- vCPU fds ----

  private vcpuIoctl(f: VcpuFile, name: string, a: KArg): number {
    const vm = f.vm;
    const v = f.vcpu;
    if (vm.dead) fail(E.EIO, 'the VM is dead');
    // Protected state (arch/x86/kvm/x86.c, guest_state_protected): these fail on SEV_ES_VM/SNP_VM once the VMSA is encrypted.
    const locked = v.protectedState && vm.hasProtectedState;
    const confidentialFpu = v.protectedState && !vm.hasProtectedState;
    const guard = (): void => {
      if (locked) fail(E.EINVAL, 'the vCPU state is protected (SEV-ES)');
    };
    switch (name) {
      case 'KVM_GET_REGS':
        guard();
        this.write(a.addr, v.regs);
        return 0;
      case 'KVM_SET_REGS':
        guard();
        v.setRegs(this.bytes(a.addr, kvm_regs.size));
        return 0;
      case 'KVM_GET_SREGS':
        guard();
        this.write(a.addr, v.sregs);
        return 0;
      case 'KVM_SET_SREGS':
        guard();
        v.sregs = validSregs(this.bytes(a.addr, kvm_sregs.size), v.cpuid);
        return 0;
      case 'KVM_GET_FPU':
        guard();
        this.write(a.addr, confidentialFpu ? new Uint8Array(kvm_fpu.size) : v.getFpu());
        return 0;
      case 'KVM_SET_FPU':
        guard();
        if (!confidentialFpu) v.setFpu(this.bytes(a.addr, kvm_fpu.size));
        return 0;
      case 'KVM_GET_XSAVE':
        guard();
        this.write(a.addr, confidentialFpu ? new Uint8Array(kvm_xsave.size) : v.xsave);
        return 0;
      case 'KVM_SET_XSAVE':
        guard();
        if (!confidentialFpu) v.setXsave(this.bytes(a.addr, kvm_xsave.size));
        return 0;
      case 'KVM_GET_XCRS':
        guard();
        this.write(a.addr, v.getXcrs());
        return 0;
      case 'KVM_SET_XCRS':
        guard();
        v.setXcrs(this.bytes(a.addr, kvm_xcrs.size));
        return 0;
      case 'KVM_GET_DEBUGREGS':
        guard();
        this.write(a.addr, v.getDebugregs());
        return 0;
      case 'KVM_SET_DEBUGREGS':
        guard();
        v.setDebugregs(this.bytes(a.addr, kvm_debugregs.size));
        return 0;
      case 'KVM_GET_MSRS':
      case 'KVM_SET_MSRS': {
        const n = new DataView(this.bytes(a.addr, 8).buffer).getUint32(0, true);
        if (n >= 256) fail(E.E2BIG);
        const entries = this.bytes(a.addr + 8n, 16 * n);
        const done = v.msrIo(entries, n, name === 'KVM_SET_MSRS');
        if (name === 'KVM_GET_MSRS') this.write(a.addr + 8n, entries);
        return done;
      }
      case 'KVM_SET_CPUID2': {
        const n = new DataView(this.bytes(a.addr, 8).buffer).getUint32(0, true);
        if (n > 256) fail(E.E2BIG);
        const raw = this.bytes(a.addr + 8n, 40 * n);
        v.cpuid = Array.from({ length: n }, (_, i) => kvm_cpuid_entry2.decode(raw, 40 * i));
        return 0;
      }
      case 'KVM_GET_LAPIC':
        if (!v.lapic) fail(E.EINVAL, 'no in-kernel local APIC (KVM_CREATE_IRQCHIP)');
        this.write(a.addr, v.lapic);
        return 0;
      case 'KVM_SET_LAPIC':
        if (!v.lapic) fail(E.EINVAL, 'no in-kernel local APIC (KVM_CREATE_IRQCHIP)');
        v.lapic = this.bytes(a.addr, kvm_lapic_state.size);
        return 0;
      case 'KVM_GET_VCPU_EVENTS':
        this.write(a.addr, v.getEvents(vm.tripleFaultEvent));
        return 0;
      case 'KVM_SET_VCPU_EVENTS':
        v.setEvents(this.bytes(a.addr, kvm_vcpu_events.size), vm.tripleFaultEvent);
        return 0;
      case 'KVM_GET_MP_STATE':
        this.write(a.addr, kvm_mp_state.encode({ mp_state: v.mpState }));
        return 0;
      case 'KVM_SET_MP_STATE':
        v.setMpState(this.read(kvm_mp_state, a.addr).mp_state);
        return 0;
      case 'KVM_SET_GUEST_DEBUG':
        v.setGuestDebug(this.read(kvm_guest_debug, a.addr).control);
        return 0;
      case 'KVM_ENABLE_CAP': {
        const c = this.read(kvm_enable_cap, a.addr);
        return fail(E.EINVAL, c.flags ? 'flags must be 0' : `vCPU cap ${c.cap} cannot be enabled`);
      }
      default:
        return vmmVcpuIoctl(this.ctx, vm, v, name, a) ?? fail(E.EINVAL);
    }
  }
}

export { supportedCpuid };

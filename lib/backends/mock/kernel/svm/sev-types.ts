/**
 * The SEV half of the mock kernel sees a VM only through a {@link SevVmPort}: its type, its memory
 * slots (user range → guest-physical base), its vCPUs' register state, and a way to mark it dead.
 * The mock's own KVM implements the port (kvm/vm.ts); the hybrid backend implements it over a real
 * KVM VM. {@link SevInfo} is `struct kvm_sev_info`.
 */
import { KvmMutex } from '../common/kvm-mutex.js';

/** The register state the VMSA is built from. */
export interface VcpuRegisterState {
  readonly regs: Uint8Array;
  readonly sregs: Uint8Array;
  readonly xsave: Uint8Array;
  readonly xcr0: bigint;
  readonly dr6: bigint;
  readonly dr7: bigint;
  readonly db: readonly bigint[];
  readonly msrs: ReadonlyMap<number, bigint>;
}

/** A memory slot as the SEV code needs it. */
export interface SevMemslot {
  readonly gpa: bigint;
  readonly size: number;
  /** The slot's user address (UserMemory.addressOf(mapping) + offset). */
  readonly uaddr: bigint;
}

export interface SevVcpuPort {
  /** vcpu_idx: creation order. */
  readonly index: number;
  /** KVM_SET_GUEST_DEBUG enabled debugging. */
  guestDebug(): boolean;
  /** guest_state_protected */
  isProtected(): boolean;
  /** What LAUNCH_UPDATE_VMSA builds the VMSA from. */
  registerState(): VcpuRegisterState;
  /** LAUNCH_UPDATE_VMSA done (with the encrypted page), or the state moved away (MOVE source). */
  setProtected(on: boolean, vmsa?: Uint8Array): void;
  /** The encrypted VMSA, if any (moved by MOVE). */
  vmsa(): Uint8Array | undefined;
}

/**
 * The bookkeeping a vCPU port keeps when the vCPU lives outside the mock's own KVM (the hybrid's
 * real vCPUs, the daemon's view of a client's): guest_debug, protected state and the encrypted VMSA.
 * Subclasses say where the register state comes from.
 */
export abstract class ExternalVcpuPort implements SevVcpuPort {
  guestDebugOn = false;
  protectedOn = false;
  vmsaPage: Uint8Array | undefined;
  constructor(readonly index: number) {}
  guestDebug(): boolean {
    return this.guestDebugOn;
  }
  isProtected(): boolean {
    return this.protectedOn;
  }
  setProtected(on: boolean, vmsa?: Uint8Array): void {
    this.protectedOn = on;
    this.vmsaPage = on ? vmsa : undefined;
  }
  vmsa(): Uint8Array | undefined {
    return this.vmsaPage;
  }
  abstract registerState(): VcpuRegisterState;
}

export interface SevVmPort {
  /** KVM_X86_*_VM */
  readonly vmType: number;
  memslots(): Iterable<SevMemslot>;
  /** The VM's vCPUs in creation order. */
  vcpus(): readonly SevVcpuPort[];
  /** kvm->created_vcpus */
  createdVcpus(): number;
  /** kvm_vm_dead: after MOVE, every ioctl of the source answers EIO. */
  markDead(): void;
  /** A mirror holds a reference on its owner VM (kvm_get_kvm / kvm_put_kvm). */
  hold?(): void;
  release?(): void;
}

/** struct enc_region */
export interface EncRegion {
  readonly addr: bigint;
  readonly size: bigint;
  readonly npages: number;
  /** Pinned pages (page index from the region's first page) in demand mode; all of them upfront. */
  readonly pinned: Set<number> | 'all';
}

/** struct kvm_sev_info */
export class SevInfo {
  active = false;
  esActive = false;
  needInit: boolean;
  asid = 0;
  handle = 0;
  policy = 0;
  /** The /dev/sev fd number LAUNCH_START / RECEIVE_START recorded (0 before). */
  fd = 0;
  pagesLocked = 0;
  regions: EncRegion[] = [];
  vmsaFeatures = 0n;
  ghcbVersion = 0;
  /** enc_context_owner: set on a mirror. */
  owner: SevVm | undefined;
  readonly mirrors = new Set<SevVm>();
  /** The 2021 patch's info_token. */
  infoToken = 0n;
  /** migration_in_progress: set by sev_lock_two_vms() for a MOVE or COPY in flight (another one is EBUSY). */
  migrationInProgress = false;
  /** SNP: a launch context exists / REQ_CERTS enabled. */
  snpContext = false;
  snpCerts = false;

  constructor(needInit: boolean) {
    this.needInit = needInit;
  }

  get snpActive(): boolean {
    return this.esActive && (this.vmsaFeatures & 1n) === 1n;
  }
}

/** A VM as the SEV layer knows it. */
export class SevVm {
  readonly port: SevVmPort;
  readonly info: SevInfo;
  /** kvm->lock: KVM_MEMORY_ENCRYPT_OP, the region ioctls, MOVE/COPY (both VMs) and vCPU creation take it. */
  readonly lock = new KvmMutex();
  /** A handle for diagnostics. */
  readonly id: number;
  dead = false;
  destroyed = false;
  /** Destroyed while mirrors lived: finished when the last mirror goes. */
  pendingDestroy = false;

  constructor(id: number, port: SevVmPort, needInit: boolean) {
    this.id = id;
    this.port = port;
    this.info = new SevInfo(needInit);
  }
}

/** A VM fd (see {@link Vm}). */
import type { Backend, BackendFd } from '../backend/contract.js';
import { explainKvmError, KvmSevError } from '../backend/errors.js';
import { invalidArgType, outOfRange } from '../uapi/errors.js';
import type { IoctlStruct, MappingRange } from '../uapi/ioctl-arg.js';
import * as ioc from '../uapi/ioctls.js';
import { kvm_enable_cap, kvm_enc_region, kvm_userspace_memory_region, u64_value } from '../uapi/kvm-structs.js';
import { GuestMemory, toBigAddr, type Address } from './guest-memory.js';
import type { Kvm } from './kvm.js';
import { Vcpu } from './vcpu.js';

export interface MemoryRegionOptions {
  slot: number;
  /** KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY. */
  flags?: number;
  guestPhysAddr: Address;
  /** The memory (all of it, or a range of a mapping); null with size 0 deletes the slot. */
  memory: GuestMemory | MappingRange | null;
}

export interface AddMemoryOptions {
  guestPhysAddr: Address;
  /** Bytes, a non-zero multiple of 4096. */
  size: number;
  /** Back it by a memfd (what local migration hands to another process); the name shows in /proc. */
  memfd?: boolean | string;
  slot?: number;
  flags?: number;
}

/**
 * A VM fd: memory slots, vCPUs, capabilities, and the raw SEV entry points (KVM_MEMORY_ENCRYPT_OP,
 * KVM_MEMORY_ENCRYPT_REG/UNREG_REGION) that the SEV layer builds on. Made by {@link Kvm.createVm};
 * closing it closes its vCPUs and unmaps the memory it added.
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * using kvm = Kvm.open({ backend: new MockHost() }); // runs anywhere; NativeBackend for the real /dev/kvm
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 }); // anonymous memory in slot 0
 * const fw = vm.addMemory({ guestPhysAddr: 0xfff0_0000n, size: 0x10_0000, memfd: true }); // memfd-backed, as a handoff needs
 * const vcpu = vm.createVcpu(); // id 0; the next one is 1
 * console.log(vm.memoryAt(0x1000n) === mem, vm.memoryAt(0xffff_fff0n) === fw, vcpu.id); // true true 0
 * ```
 */
export class Vm implements Disposable, AsyncDisposable {
  readonly kvm: Kvm;
  readonly fd: BackendFd;
  readonly backend: Backend;
  /** KVM_X86_*_VM */
  readonly type: number;
  private readonly vcpus = new Set<Vcpu>();
  private readonly owned: GuestMemory[] = [];
  private readonly slots = new Map<number, GuestMemory | MappingRange>();
  private nextVcpuId = 0;

  /** @internal use {@link Kvm.createVm}. */
  constructor(kvm: Kvm, fd: BackendFd, type: number) {
    this.kvm = kvm;
    this.fd = fd;
    this.backend = kvm.backend;
    this.type = type;
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  /** Guest memory added with {@link addMemory}, in order. */
  get memory(): readonly GuestMemory[] {
    return this.owned;
  }

  /** The guest memory holding `gpa`, if any. */
  memoryAt(gpa: Address, length = 1): GuestMemory | undefined {
    return this.owned.find((m) => !m.closed && m.contains(gpa, length));
  }

  checkExtension(cap: number): number {
    return this.backend.ioctl(this.fd, ioc.KVM_CHECK_EXTENSION, cap);
  }

  /** KVM_SET_USER_MEMORY_REGION. */
  setUserMemoryRegion(opts: MemoryRegionOptions): void {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    const range = opts.memory instanceof GuestMemory ? opts.memory.range() : opts.memory;
    this.backend.ioctl(
      this.fd,
      ioc.KVM_SET_USER_MEMORY_REGION,
      kvm_userspace_memory_region.arg({
        slot: opts.slot,
        flags: opts.flags ?? 0,
        guest_phys_addr: toBigAddr('guestPhysAddr', opts.guestPhysAddr),
        memory_size: BigInt(range ? range.length : 0),
        userspace_addr: range,
      }),
    );
    if (range) this.slots.set(opts.slot, opts.memory!);
    else this.slots.delete(opts.slot);
  }

  /** Maps new memory (anonymous or memfd) and plugs it in at `guestPhysAddr`. The VM owns it. */
  addMemory(opts: AddMemoryOptions): GuestMemory {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('opts', 'object', opts);
    let slot = opts.slot;
    if (slot === undefined) for (slot = 0; this.slots.has(slot); slot++);
    let memfd: BackendFd | undefined;
    let mapping;
    if (opts.memfd) {
      memfd = this.backend.memfdCreate(typeof opts.memfd === 'string' ? opts.memfd : `kvm-sev-guest-${slot}`, opts.size);
      try {
        mapping = this.backend.mmapShared(memfd, opts.size);
      } catch (e) {
        memfd.close();
        throw e;
      }
    } else {
      mapping = this.backend.mmapAnonymous(opts.size);
    }
    const mem = new GuestMemory(mapping, opts.guestPhysAddr, memfd);
    try {
      this.setUserMemoryRegion({ slot, flags: opts.flags ?? 0, guestPhysAddr: opts.guestPhysAddr, memory: mem });
    } catch (e) {
      mem.close();
      throw e;
    }
    this.owned.push(mem);
    return mem;
  }

  /** KVM_CREATE_VCPU; ids count up from 0 by default. */
  createVcpu(id: number = this.nextVcpuId): Vcpu {
    if (!Number.isSafeInteger(id) || id < 0) throw outOfRange('id', 'an integer >= 0', id);
    let fd: BackendFd;
    try {
      fd = this.backend.ioctlFd(this.fd, ioc.KVM_CREATE_VCPU, id);
    } catch (e) {
      if ((e as { code?: unknown }).code !== 'EEXIST') throw e;
      const here = this.vcpuList.some((v) => v.id === id);
      throw explainKvmError(
        e,
        `vCPU id ${id} already exists in this VM`,
        here
          ? `vm.createVcpu(${id}) was called before: use that Vcpu, or createVcpu() with no id for the next free one`
          : `another fd of this VM (one received from another process, or a Vm over the same VM fd) created vCPU ${id}; pick another id`,
      );
    }
    const v = new Vcpu(this, id, fd);
    this.vcpus.add(v);
    this.nextVcpuId = Math.max(this.nextVcpuId, id + 1);
    return v;
  }

  /** @internal */
  forgetVcpu(v: Vcpu): void {
    this.vcpus.delete(v);
  }

  /** The vCPUs created here and not yet closed. */
  get vcpuList(): readonly Vcpu[] {
    return [...this.vcpus];
  }

  /** KVM_ENABLE_CAP on the VM (e.g. KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM with args[0] = source VM fd). */
  enableCap(cap: number, args: readonly bigint[] = [], flags = 0): void {
    this.backend.ioctl(this.fd, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap, flags, args: [0, 1, 2, 3].map((i) => args[i] ?? 0n) }));
  }

  setTssAddr(addr: number): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_TSS_ADDR, addr);
  }
  setIdentityMapAddr(addr: Address): void {
    this.backend.ioctl(this.fd, ioc.KVM_SET_IDENTITY_MAP_ADDR, u64_value.arg({ value: toBigAddr('addr', addr) }));
  }
  createIrqchip(): void {
    this.backend.ioctl(this.fd, ioc.KVM_CREATE_IRQCHIP);
  }

  /**
   * KVM_MEMORY_ENCRYPT_OP with a `kvm_sev_cmd` (or no argument: the "is SEV enabled?" probe, which
   * answers 0 or ENOTTY). The command's `error` field holds the firmware status afterwards.
   */
  memoryEncryptOp(cmd?: IoctlStruct): number {
    return this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
  }
  memoryEncryptOpAsync(cmd: IoctlStruct): Promise<number> {
    return this.backend.ioctlAsync(this.fd, ioc.KVM_MEMORY_ENCRYPT_OP, cmd);
  }
  /** KVM_MEMORY_ENCRYPT_REG_REGION: pins guest memory for an SEV guest. */
  registerEncRegion(range: MappingRange): void {
    this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, kvm_enc_region.arg({ addr: range, size: BigInt(range.length) }));
  }
  /** KVM_MEMORY_ENCRYPT_UNREG_REGION: the exact range registered before. */
  unregisterEncRegion(range: MappingRange): void {
    this.backend.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION, kvm_enc_region.arg({ addr: range, size: BigInt(range.length) }));
  }

  /** Closes the vCPUs, then the VM fd, then unmaps the memory it added. Idempotent. */
  close(): void {
    for (const v of [...this.vcpus]) v.close();
    this.fd.close();
    this.slots.clear();
    for (const m of this.owned.splice(0)) {
      try {
        m.close();
      } catch (e) {
        // The kernel keeps the VM while other fds (a handed-off copy) reference it: the memory stays.
        if ((e as { code?: string }).code !== 'EBUSY') throw e;
      }
    }
  }
  [Symbol.dispose](): void {
    this.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

export { KvmSevError };

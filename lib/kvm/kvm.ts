/** The /dev/kvm system fd (see {@link Kvm}). */
import type { Backend, BackendFd } from '../backend/contract.js';
import { KVM_CAP, KVM_X86_DEFAULT_VM } from '../uapi/constants.js';
import * as ioc from '../uapi/ioctls.js';
import {
  cpuid2Arg,
  decodeCpuid2,
  decodeMsrList,
  kvm_device_attr,
  msrListArg,
  u64_value,
  type KvmCpuidEntry2,
} from '../uapi/kvm-structs.js';
import { Vm } from './vm.js';
import { hasDeviceAttr } from './device.js';

export interface KvmOpenOptions {
  /** Which kernel: a backend chosen by `openHost()`, or `new NativeBackend()` for the real /dev/kvm. */
  backend: Backend;
}

/**
 * The /dev/kvm system fd: the API version, capabilities, the supported CPUID and MSRs, the VM types,
 * and VMs. Which kernel answers is the backend's choice: the real one (`new NativeBackend()`), real
 * KVM with a mocked SEV (`HybridBackend` of `kvm-sev/hybrid`), the mock (`MockHost` of
 * `kvm-sev/mock`), or whichever {@link openHost} picks. `using` closes it (so does `close()`).
 *
 * ```ts
 * import { Kvm, openHost } from 'kvm-sev';
 * const host = await openHost(); // native, hybrid or mock: the best that works here
 * using kvm = Kvm.open({ backend: host.backend });
 * console.log(kvm.apiVersion()); // 12
 * console.log(kvm.supportedVmTypes()); // KVM_X86_*_VM this kernel creates: [0, 2, 3] where SEV VM types exist
 * using vm = kvm.createVm(); // KVM_X86_DEFAULT_VM
 * console.log(vm.type); // 0
 * ```
 */
export class Kvm implements Disposable, AsyncDisposable {
  readonly backend: Backend;
  readonly fd: BackendFd;
  private mmapSize: number | undefined;

  private constructor(backend: Backend, fd: BackendFd) {
    this.backend = backend;
    this.fd = fd;
  }

  /** Opens /dev/kvm on a backend. */
  static open(options: KvmOpenOptions): Kvm {
    const backend = options.backend;
    return new Kvm(backend, backend.open('/dev/kvm'));
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  /** KVM_GET_API_VERSION: 12 on every kernel since 2.6.22. */
  apiVersion(): number {
    return this.backend.ioctl(this.fd, ioc.KVM_GET_API_VERSION);
  }

  /** KVM_CHECK_EXTENSION: 0 if absent, else 1 or a capability-specific value. */
  checkExtension(cap: number): number {
    return this.backend.ioctl(this.fd, ioc.KVM_CHECK_EXTENSION, cap);
  }

  /** KVM_GET_VCPU_MMAP_SIZE (cached). */
  vcpuMmapSize(): number {
    return (this.mmapSize ??= this.backend.ioctl(this.fd, ioc.KVM_GET_VCPU_MMAP_SIZE));
  }

  /** The VM types KVM_CREATE_VM accepts (KVM_CAP_VM_TYPES; kernels before 6.10 only know the default). */
  supportedVmTypes(): number[] {
    const mask = this.checkExtension(KVM_CAP.VM_TYPES);
    if (mask === 0) return [KVM_X86_DEFAULT_VM];
    const out: number[] = [];
    for (let t = 0; t < 32; t++) if (mask & (1 << t)) out.push(t);
    return out;
  }

  /** KVM_GET_SUPPORTED_CPUID, growing the buffer until it fits (E2BIG). */
  supportedCpuid(): KvmCpuidEntry2[] {
    for (let cap = 64; ; cap *= 2) {
      const a = cpuid2Arg(cap);
      try {
        this.backend.ioctl(this.fd, ioc.KVM_GET_SUPPORTED_CPUID, a);
        return decodeCpuid2(a.bytes).entries;
      } catch (e) {
        if ((e as { code?: string }).code !== 'E2BIG' || cap >= 4096) throw e;
      }
    }
  }

  /** KVM_GET_MSR_INDEX_LIST. */
  msrIndexList(): number[] {
    for (let cap = 128; ; cap *= 2) {
      const a = msrListArg(cap);
      try {
        this.backend.ioctl(this.fd, ioc.KVM_GET_MSR_INDEX_LIST, a);
        return decodeMsrList(a.bytes).indices;
      } catch (e) {
        if ((e as { code?: string }).code !== 'E2BIG' || cap >= 16384) throw e;
      }
    }
  }

  /** See KVM_GET_MSR_FEATURE_INDEX_LIST: the MSRs that describe the host's features (ARCH_CAPABILITIES, …). */
  msrFeatureIndexList(): number[] {
    for (let cap = 64; ; cap *= 2) {
      const a = msrListArg(cap);
      try {
        this.backend.ioctl(this.fd, ioc.KVM_GET_MSR_FEATURE_INDEX_LIST, a);
        return decodeMsrList(a.bytes).indices;
      } catch (e) {
        if ((e as { code?: string }).code !== 'E2BIG' || cap >= 16384) throw e;
      }
    }
  }

  /** See KVM_HAS_DEVICE_ATTR on /dev/kvm: `kvm.hasDeviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES)`. */
  hasDeviceAttr(group: number, attr: bigint | number): boolean {
    return hasDeviceAttr(this.backend, this.fd, group, attr);
  }

  /** KVM_GET_DEVICE_ATTR on /dev/kvm (e.g. group KVM_X86_GRP_SEV, attr KVM_X86_SEV_VMSA_FEATURES). */
  deviceAttr(group: number, attr: bigint | number): bigint {
    const value = new Uint8Array(8);
    this.backend.ioctl(this.fd, ioc.KVM_GET_DEVICE_ATTR, kvm_device_attr.arg({ group, attr: BigInt(attr), addr: value }));
    return u64_value.decode(value).value;
  }

  /** KVM_CREATE_VM. */
  createVm(type: number = KVM_X86_DEFAULT_VM): Vm {
    return new Vm(this, this.backend.ioctlFd(this.fd, ioc.KVM_CREATE_VM, type), type);
  }

  /** Idempotent. VMs created here stay usable (they hold their own fds). */
  close(): void {
    this.fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

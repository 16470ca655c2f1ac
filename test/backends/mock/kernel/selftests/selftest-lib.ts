/**
 * The helpers the kernel's KVM selftests use (tools/testing/selftests/kvm: lib/kvm_util.c and
 * lib/x86/sev.c, include/x86/sev.h), at the raw ioctl level: `Backend.ioctl` with the uapi codecs on
 * a mock host, so the re-created selftests exercise exactly the bytes the C programs pass.
 */
import type { ExecutionContext } from 'ava';
import type { Backend, BackendFd, GuestMapping } from '../../../../../lib/backend/contract.js';
import { MockHost, type MockHostOptions } from '../../../../../lib/backends/mock/index.js';
import { KVM_CAP, KVM_SEV } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct, MappingRange } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import {
  cpuid2Arg,
  decodeCpuid2,
  kvm_device_attr,
  kvm_enable_cap,
  kvm_enc_region,
  kvm_userspace_memory_region,
} from '../../../../../lib/uapi/kvm-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
} from '../../../../../lib/uapi/sev-structs.js';

/** SEV_POLICY_NO_DBG, SEV_POLICY_ES (include/x86/sev.h). */
export const SEV_POLICY_ES = 1 << 2;
/** enum sev_guest_state of the selftests. */
export const SEV_GUEST_STATE = { UNINITIALIZED: 0, LAUNCH_UPDATE: 1, LAUNCH_SECRET: 2, RUNNING: 3 } as const;
/** `-1` in a `__u32 sev_fd`: no /dev/sev yet (vm->arch.sev_fd). */
const NO_FD = 0xffffffff;

/** What an ioctl answered: 'ok' or the errno's code, and the struct's `error` after a KVM_SEV command. */
export interface Answer {
  readonly code: string;
  readonly error: number;
}

function codeOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string' || code.startsWith('ERR_')) throw e;
    return code;
  }
}

/**
 * A mock host and /dev/kvm, with the /dev/sev fds and VMs made from it: [Symbol.dispose]() releases
 * them all, and the constructor registers it as a t.teardown of the test.
 */
export class SelftestHost {
  readonly host: MockHost;
  readonly kvm: BackendFd;
  private readonly sevFds: BackendFd[] = [];
  private readonly vms: SelftestVm[] = [];

  constructor(t: ExecutionContext, options: MockHostOptions = {}) {
    this.host = new MockHost(options);
    this.kvm = this.host.open('/dev/kvm');
    t.teardown(() => this[Symbol.dispose]());
  }

  /** The VMs, newest first (a mirror before its source), then the /dev/sev fds, then /dev/kvm. */
  [Symbol.dispose](): void {
    for (const vm of [...this.vms].reverse()) vm[Symbol.dispose]();
    for (const f of this.sevFds) f.close();
    this.kvm.close();
  }

  get backend(): Backend {
    return this.host;
  }

  /** open_sev_dev_path_or_exit() */
  openSev(): BackendFd {
    this.sevFds.push(this.host.open('/dev/sev'));
    return this.sevFds.at(-1)!;
  }

  /** kvm_check_cap() */
  checkCap(cap: number): number {
    return this.host.ioctl(this.kvm, ioc.KVM_CHECK_EXTENSION, cap);
  }

  /** kvm_cpu_has(X86_FEATURE_SEV / SEV_ES / SEV_SNP): CPUID 0x8000001F EAX bits 1, 3, 4 of KVM_GET_SUPPORTED_CPUID. */
  cpuHas(feature: 'SEV' | 'SEV_ES' | 'SEV_SNP'): boolean {
    const a = cpuid2Arg(256);
    this.host.ioctl(this.kvm, ioc.KVM_GET_SUPPORTED_CPUID, a);
    const eax = decodeCpuid2(a.bytes).entries.find((e) => e.function === 0x8000001f)?.eax ?? 0;
    return (eax & { SEV: 1 << 1, SEV_ES: 1 << 3, SEV_SNP: 1 << 4 }[feature]) !== 0;
  }

  /** __kvm_has_device_attr() / kvm_device_attr_get() on /dev/kvm: the u64, or the errno's code. */
  deviceAttr(group: number, attr: number): bigint | string {
    const value = new Uint8Array(8);
    const code = codeOf(() =>
      this.host.ioctl(this.kvm, ioc.KVM_GET_DEVICE_ATTR, kvm_device_attr.arg({ group, attr: BigInt(attr), addr: value })),
    );
    return code === 'ok' ? Buffer.from(value).readBigUInt64LE() : code;
  }

  /** vm_create_barebones() / vm_create_barebones_type(): a VM without vCPUs or memory. */
  vmCreateBarebones(type = 0): SelftestVm {
    this.vms.push(new SelftestVm(this, type));
    return this.vms.at(-1)!;
  }
}

/** A selftest `struct kvm_vm`: its fd, vCPUs, memory, and the /dev/sev fd its SEV commands carry. */
export class SelftestVm {
  readonly fd: BackendFd;
  readonly vcpus: BackendFd[] = [];
  /** The memory slots registered. */
  readonly memory: { mapping: GuestMapping; gpa: bigint }[] = [];
  /** vm->arch.sev_fd */
  sevFd: BackendFd | undefined;
  /** Every mapping made for a slot (also one whose KVM_SET_USER_MEMORY_REGION failed). */
  private readonly mappings: GuestMapping[] = [];
  private closed = false;

  /** vm_create_barebones_type(): KVM_CREATE_VM of `type` on the host's /dev/kvm. */
  constructor(
    readonly h: SelftestHost,
    readonly type: number,
  ) {
    this.fd = h.host.ioctlFd(h.kvm, ioc.KVM_CREATE_VM, type);
  }

  private get host(): MockHost {
    return this.h.host;
  }

  /** __vm_vcpu_add() */
  vcpuAdd(id: number): BackendFd {
    this.vcpus.push(this.host.ioctlFd(this.fd, ioc.KVM_CREATE_VCPU, id));
    return this.vcpus.at(-1)!;
  }

  /** A memory slot of `size` bytes at `gpa` (vm_userspace_mem_region_add()). */
  addMemory(slot: number, gpa: bigint, size: number): GuestMapping {
    this.mappings.push(this.host.mmapAnonymous(size));
    const mapping = this.mappings.at(-1)!;
    this.host.ioctl(
      this.fd,
      ioc.KVM_SET_USER_MEMORY_REGION,
      kvm_userspace_memory_region.arg({
        slot,
        guest_phys_addr: gpa,
        memory_size: BigInt(size),
        userspace_addr: { kind: 'mapping', mapping, offset: 0, length: size },
      }),
    );
    this.memory.push({ mapping, gpa });
    return mapping;
  }

  /** __vm_sev_ioctl(): the KVM_SEV command `id` with `data` (null: a NULL pointer). */
  sevIoctl(id: number, data: IoctlStruct | null = null, sevFd = this.sevFd): Answer {
    const cmd = kvm_sev_cmd.arg({ id, data, sev_fd: sevFd ? sevFd.fd : NO_FD });
    const code = codeOf(() => this.host.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_OP, cmd));
    return { code, error: kvm_sev_cmd.decode(cmd.bytes).error };
  }

  /** vm_sev_ioctl(): the command must succeed with error 0. */
  sev(id: number, data: IoctlStruct | null = null): void {
    const a = this.sevIoctl(id, data);
    if (a.code !== 'ok' || a.error !== 0) throw new Error(`KVM_SEV command ${id} failed: ${a.code}, error ${a.error}`);
  }

  /** __vm_enable_cap(): 'ok' or the errno's code. */
  enableCap(cap: number, arg0: bigint): string {
    return codeOf(() => this.host.ioctl(this.fd, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap, args: [arg0, 0n, 0n, 0n] })));
  }

  /** __sev_migrate_from(): KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM with the source's fd. */
  migrateFrom(src: SelftestVm): string {
    return this.enableCap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, BigInt(src.fd.fd));
  }

  /** __sev_mirror_create(): KVM_CAP_VM_COPY_ENC_CONTEXT_FROM with the source's fd. */
  mirrorFrom(src: SelftestVm): string {
    return this.enableCap(KVM_CAP.VM_COPY_ENC_CONTEXT_FROM, BigInt(src.fd.fd));
  }

  /** sev_vm_init() / sev_es_vm_init(): KVM_SEV_INIT / ES_INIT on a default VM, INIT2 on a typed one. */
  sevInit(es: boolean): void {
    if (this.type === 0) {
      this.sevFd = this.h.openSev();
      this.sev(es ? KVM_SEV.ES_INIT : KVM_SEV.INIT);
    } else {
      this.sevFd ??= this.h.openSev();
      this.sev(KVM_SEV.INIT2, kvm_sev_init.arg({}));
    }
  }

  /** KVM_SEV_GUEST_STATUS */
  guestStatus(): { handle: number; policy: number; state: number } {
    const s = kvm_sev_guest_status.arg({});
    this.sev(KVM_SEV.GUEST_STATUS, s);
    return kvm_sev_guest_status.decode(s.bytes);
  }

  /**
   * sev_vm_launch(): LAUNCH_START, GUEST_STATUS (the policy, LAUNCH_UPDATE), each memory slot
   * registered and LAUNCH_UPDATE_DATA'd (encrypt_region()), LAUNCH_UPDATE_VMSA for an ES policy.
   */
  sevLaunch(policy: number): void {
    this.sev(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy }));
    const st = this.guestStatus();
    if (st.policy !== policy || st.state !== SEV_GUEST_STATE.LAUNCH_UPDATE)
      throw new Error(`unexpected guest status ${JSON.stringify(st)}`);
    for (const { mapping } of this.memory) {
      const range: MappingRange = { kind: 'mapping', mapping, offset: 0, length: mapping.size };
      this.host.ioctl(this.fd, ioc.KVM_MEMORY_ENCRYPT_REG_REGION, kvm_enc_region.arg({ addr: range }));
      this.sev(KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: range }));
    }
    if (policy & SEV_POLICY_ES) this.sev(KVM_SEV.LAUNCH_UPDATE_VMSA);
  }

  /** vm_sev_launch(): sev_vm_launch(), LAUNCH_MEASURE (256 bytes; LAUNCH_SECRET state), LAUNCH_FINISH (RUNNING). */
  vmSevLaunch(policy: number): void {
    this.sevLaunch(policy);
    this.sev(KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(256) }));
    if (this.guestStatus().state !== SEV_GUEST_STATE.LAUNCH_SECRET) throw new Error('LAUNCH_MEASURE left the guest outside LAUNCH_SECRET');
    this.sev(KVM_SEV.LAUNCH_FINISH);
    if (this.guestStatus().state !== SEV_GUEST_STATE.RUNNING) throw new Error('LAUNCH_FINISH left the guest outside RUNNING');
  }

  /** sev_decrypt_memory() / sev_encrypt_memory() (include/x86/sev.h): DBG_DECRYPT / DBG_ENCRYPT of `len` bytes. */
  dbg(decrypt: boolean, dst: MappingRange, src: MappingRange): Answer {
    return this.sevIoctl(decrypt ? KVM_SEV.DBG_DECRYPT : KVM_SEV.DBG_ENCRYPT, kvm_sev_dbg.arg({ src_uaddr: src, dst_uaddr: dst }));
  }

  /** kvm_vm_free(): the vCPU fds, then the VM fd (the kernel destroys the VM with its last reference). */
  close(): void {
    this[Symbol.dispose]();
  }

  /**
   * close(); again (the host's teardown does) it only munmap()s what a mirror kept bound before: a
   * mirror may hold this VM (and its memory slots) alive, as it would in the kernel.
   */
  [Symbol.dispose](): void {
    if (!this.closed) {
      this.closed = true;
      for (const v of this.vcpus) v.close();
      this.fd.close();
    }
    for (const m of this.mappings) if (!m.closed && !(m as { bindings?: number }).bindings) m.unmap();
  }
}

/** A mapping range (the selftests' pointers into their buffers). */
export function at(mapping: GuestMapping, offset: number, length: number): MappingRange {
  return { kind: 'mapping', mapping, offset, length };
}

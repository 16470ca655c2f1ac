/**
 * What the KVM_SEV command handlers share, wherever they live (sev.ts, sev-migration.ts,
 * sev-local-migration.ts, sev-enc-context.ts): the command as a handler sees it, the kernel's SEV
 * configuration, and the static helpers of arch/x86/kvm/svm/sev.c that every handler calls
 * (copy to and from user, sev_issue_cmd(), sev_bind_asid()). {@link MockSevKernel} (sev.ts)
 * implements {@link SevCmdHelpers}; the handlers in the other files take it as their first argument,
 * as sev.c's handlers take `struct kvm *`.
 */
import type { SevFirmwareCommandName } from '../../../../uapi/constants.js';
import type { FwResult, SevFirmware } from '../../psp/api.js';
import type { FwCall, SevDriver } from '../ccp/sev-dev.js';
import type { KernelProfile } from '../common/kernel-profile.js';
import type { UserMemory } from '../common/user-memory.js';
import type { AsidSpace } from './asid.js';
import type { SevMemory } from './sev-memory.js';
import type { SevVm } from './sev-types.js';

/** The kvm_sev_cmd a handler works on; `error` is written back. */
export interface SevCmd {
  readonly id: number;
  readonly data: bigint;
  error: number;
  readonly sevFd: number;
}

export interface SevKernelConfig {
  readonly kernel: KernelProfile;
  /** kvm_amd's sev / sev_es parameters as set up (what the host really supports). */
  readonly enabled: boolean;
  readonly es: boolean;
  readonly snp: boolean;
  readonly mem: UserMemory;
  readonly driver: SevDriver;
  readonly asids: AsidSpace;
  readonly memory: SevMemory;
  /** Is `fd` an open /dev/sev fd of this host? (sev_issue_cmd_external_user) */
  isSevFd(fd: number): boolean;
  /** The VM behind a VM fd number of this host; 'other' for an fd that is not a VM, undefined for none. */
  vmByFd(fd: number): SevVm | 'other' | undefined;
  /** Supported vmsa_features (KVM_X86_SEV_VMSA_FEATURES). */
  readonly vmsaFeatures: bigint;
}

/** A struct codec, as the handlers copy structs from user memory. */
export interface StructCodec<T> {
  readonly size: number;
  decode(b: Uint8Array): T;
}

/** sev.c's helpers, as a handler in another file calls them. */
export interface SevCmdHelpers {
  readonly cfg: SevKernelConfig;
  /** The 2021 local-migration kernel (5.13's rules). */
  readonly legacy: boolean;
  /** sev_guest() */
  sevGuest(vm: SevVm): boolean;
  /** sev_snp_guest() */
  snpGuest(vm: SevVm): boolean;
  /** copy_from_user of a whole struct (EFAULT if it is not mapped). */
  read<T>(codec: StructCodec<T>, addr: bigint): T;
  /** copy_to_user (EFAULT if it is not mapped). */
  write(addr: bigint, bytes: Uint8Array): void;
  /** sev_issue_cmd(): through the /dev/sev fd the VM recorded; throws the errno, returns the firmware's output. */
  fwVm<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes?: number): T;
  /** __sev_issue_cmd(fd): EBADF unless `fd` is an open /dev/sev of this host. */
  fwFd<T extends FwResult>(fd: number, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes?: number): T;
  /** sev_issue_cmd() with the outcome kept (the caller decides what to write back). */
  fwOutcome<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T): FwCall<T>;
  /** A command that is the firmware call on the VM's handle and nothing else (LAUNCH_FINISH, SEND_FINISH...). */
  simple(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware, handle: number) => FwResult): void;
  /**
   * How sev_launch_start() and sev_receive_start() end, once the firmware made a guest `handle`:
   * sev_bind_asid() (DECOMMISSION the handle if it fails), `params` (with the handle) back to
   * userspace (sev_unbind_asid() and EFAULT if that faults), then the VM records the handle and the
   * /dev/sev fd of the command.
   */
  bindGuest(vm: SevVm, cmd: SevCmd, handle: number, params: Uint8Array): void;
}

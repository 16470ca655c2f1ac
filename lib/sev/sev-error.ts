/**
 * SEV errors. A failed KVM_MEMORY_ENCRYPT_OP (and KVM_MEMORY_ENCRYPT_REG/UNREG_REGION, KVM_ENABLE_CAP
 * with the encryption-context caps) or SEV_ISSUE_CMD becomes the same {@link KvmError}, enriched with
 * `sev: { command, fwError, fwErrorName }` and a `hint` a person can act on; the firmware status is
 * appended to the message.
 *
 * `fwError` is the `error` word the kernel wrote back (`kvm_sev_cmd.error`, `sev_issue_cmd.error`).
 * The kernel does not zero it on entry, so callers always pass 0: a failure that leaves 0 there is the
 * kernel's own, not the firmware's. 0xFFFFFFFF reads as -1 (SEV_RET_NO_FW_CALL). Calls without an
 * `error` field (REG_REGION, UNREG_REGION, VM_MOVE/COPY_ENC_CONTEXT_FROM) report -1.
 *
 * Facts about the host that a hint quotes (kvm_amd's parameters, RLIMIT_MEMLOCK) come from the backend's
 * {@link SystemView} only. Argument checks are lib/uapi/args.ts.
 */
import { KvmError } from '../backend/errors.js';
import type { SystemView } from '../backend/system-view.js';
import { GSTATE, PSTATE, SEV_FW_BLOB_MAX_SIZE, guestStateName, platformStateName, vmTypeName } from '../uapi/constants.js';
import { SEV_RET, sevStatusDescription, sevStatusName } from '../uapi/sev-status.js';

// ------------------------------------------------------------------------------------------------
// Firmware status

/** The firmware status from a written-back `error` word (u32): 0xFFFFFFFF is SEV_RET_NO_FW_CALL (-1). */
export function firmwareStatus(word: number): number {
  return word === 0xffffffff ? SEV_RET.NO_FW_CALL : word;
}

/** What the SEV layer knows about a failed call; everything but `via` and `command` is optional. */
export interface SevFailure {
  /** 'kvm': a VM-fd call (KVM_SEV_* and friends); 'psp': SEV_ISSUE_CMD on /dev/sev. */
  readonly via: 'kvm' | 'psp';
  /**
   * The command without its prefix: a KVM_SEV_* name ('LAUNCH_START'), a /dev/sev name ('PEK_CSR',
   * 'SNP_COMMIT'), or 'REG_REGION', 'UNREG_REGION', 'VM_MOVE_ENC_CONTEXT_FROM', 'VM_COPY_ENC_CONTEXT_FROM',
   * 'LOCAL_SEND', 'LOCAL_RECEIVE', or 'OPEN' (opening /dev/sev).
   */
  readonly command: string;
  /** The written-back `error` word; omitted for calls without one (then fwError is -1). */
  readonly errorWord?: number;
  /** The length the firmware asked for (INVALID_LEN), if known. */
  readonly requiredLength?: number;
  /** The guest's firmware state (GSTATE) at the time of the failure, if it could be read. */
  readonly guestState?: number;
  /** The platform state (PSTATE) and guest count, if they could be read. */
  readonly platformState?: number;
  readonly guestCount?: number;
  /** Result of the NULL-argument KVM_MEMORY_ENCRYPT_OP probe, if it was run. */
  readonly sevEnabled?: boolean;
  /** KVM_X86_*_VM of the VM. */
  readonly vmType?: number;
  /** The /dev/sev fd number passed in `sev_fd`, or undefined if none was given (sev_fd = -1). */
  readonly sevFd?: number;
  /** The VM fd was already closed. */
  readonly vmClosed?: boolean;
  /** The VM got its SEV context by KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM (which leaves the /dev/sev fd behind). */
  readonly movedIn?: boolean;
  /** INIT2's arguments, to point at the wrong one. */
  readonly init2?: { readonly vmsaFeatures: bigint; readonly flags: number; readonly ghcbVersion: number };
  /** Facts about the host that help the reader, from the backend's system view: "kvm_amd sev=N", "RLIMIT_MEMLOCK is 8 MiB". */
  readonly hostSev?: string;
  readonly memlock?: string;
}

/** Display name: `KVM_SEV_LAUNCH_START`, `SEV_PEK_CSR`, `SNP_COMMIT`, `KVM_MEMORY_ENCRYPT_REG_REGION`, `KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM`. */
export function sevCommandDisplayName(via: 'kvm' | 'psp', command: string): string {
  if (via === 'psp') {
    if (command === 'OPEN') return 'open /dev/sev';
    return command.startsWith('SNP_') ? command : `SEV_${command}`;
  }
  if (command === 'REG_REGION' || command === 'UNREG_REGION') return `KVM_MEMORY_ENCRYPT_${command}`;
  if (command.startsWith('VM_')) return `KVM_CAP_${command}`;
  return `KVM_SEV_${command}`;
}

/** Guest states (GSTATE) each KVM_SEV command needs (SEV API spec §6.1.1; docs/sev-reference.md §2.2). */
const GUEST_STATE_NEEDED: Readonly<Record<string, readonly (keyof typeof GSTATE)[]>> = {
  LAUNCH_UPDATE_DATA: ['LUPDATE'],
  LAUNCH_UPDATE_VMSA: ['LUPDATE'],
  LAUNCH_MEASURE: ['LUPDATE'],
  LAUNCH_SECRET: ['LSECRET'],
  LAUNCH_FINISH: ['LSECRET'],
  GET_ATTESTATION_REPORT: ['LSECRET', 'RUNNING', 'SUPDATE', 'SENT'],
  SEND_START: ['RUNNING'],
  SEND_UPDATE_DATA: ['SUPDATE'],
  SEND_FINISH: ['SUPDATE'],
  SEND_CANCEL: ['SUPDATE'],
  RECEIVE_UPDATE_DATA: ['RUPDATE'],
  RECEIVE_FINISH: ['RUPDATE'],
};

/** Platform states (PSTATE) each command needs (SEV API spec §5.1.2; docs/sev-reference.md §2.1). */
function platformStatesNeeded(via: 'kvm' | 'psp', command: string): readonly (keyof typeof PSTATE)[] {
  if (via === 'psp') {
    switch (command) {
      case 'FACTORY_RESET':
        return ['UNINIT'];
      case 'PEK_GEN':
      case 'PEK_CERT_IMPORT':
        return ['INIT'];
      default:
        return ['INIT', 'WORKING'];
    }
  }
  switch (command) {
    case 'GUEST_STATUS':
    case 'LAUNCH_START':
    case 'RECEIVE_START':
      return ['INIT', 'WORKING'];
    default:
      return ['WORKING'];
  }
}

const ORDER =
  'the launch order is LAUNCH_START → LAUNCH_UPDATE_DATA/VMSA… → LAUNCH_MEASURE → LAUNCH_SECRET… → LAUNCH_FINISH; ' +
  'migration: SEND_START → SEND_UPDATE_DATA… → SEND_FINISH (or SEND_CANCEL), RECEIVE_START → RECEIVE_UPDATE_DATA… → RECEIVE_FINISH';

const PIN_COMMANDS = new Set([
  'LAUNCH_UPDATE_DATA',
  'LAUNCH_SECRET',
  'DBG_DECRYPT',
  'DBG_ENCRYPT',
  'SEND_UPDATE_DATA',
  'RECEIVE_UPDATE_DATA',
  'REG_REGION',
]);
const SEV_FD_COMMANDS = new Set(['LAUNCH_START', 'RECEIVE_START', 'SNP_LAUNCH_START', 'SNP_LAUNCH_UPDATE']);
const MIRROR_OK = new Set(['LAUNCH_UPDATE_VMSA', 'GUEST_STATUS', 'DBG_DECRYPT', 'DBG_ENCRYPT']);
const INIT_COMMANDS = new Set(['INIT', 'ES_INIT', 'INIT2']);

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

function stateName(kind: 'guest' | 'platform', s: number): string {
  return (kind === 'guest' ? guestStateName(s) : platformStateName(s)) ?? `UNKNOWN(${s})`;
}

function vmTypeLabel(type: number | undefined): string {
  if (type === undefined) return 'unknown';
  return `KVM_X86_${vmTypeName(type) ?? String(type)}_VM`;
}

/** The hint for a firmware status (EIO with a non-zero `error`). */
function firmwareHint(f: SevFailure, fw: number, name: string): string {
  switch (fw) {
    case SEV_RET.INVALID_GUEST_STATE: {
      const need = GUEST_STATE_NEEDED[f.command];
      const now = f.guestState === undefined ? '' : `; the guest is in ${stateName('guest', f.guestState)}`;
      const needs = need
        ? `${name} runs only in guest state ${need.join(' or ')}${now}`
        : `${name} is not allowed in the guest's current state${now}`;
      return `Commands out of order: ${needs} (${ORDER}).`;
    }
    case SEV_RET.INVALID_PLATFORM_STATE: {
      const need = platformStatesNeeded(f.via, f.command);
      const now =
        f.platformState === undefined
          ? ''
          : `; it is ${stateName('platform', f.platformState)}${f.guestCount !== undefined ? ` with ${f.guestCount} guest(s)` : ''}`;
      const extra =
        f.via === 'psp' && (f.command === 'PEK_GEN' || f.command === 'PEK_CERT_IMPORT')
          ? ' (WORKING means SEV guests are running: destroy them first)'
          : '';
      return `Wrong platform state: ${name} needs the platform ${need.join(' or ')}${now}${extra}.`;
    }
    case SEV_RET.POLICY_FAILURE:
      switch (f.command) {
        case 'DBG_DECRYPT':
        case 'DBG_ENCRYPT':
          return 'The guest policy forbids it: NODBG (policy bit 0) is set, so the firmware refuses DBG_DECRYPT/DBG_ENCRYPT. Launch with a policy without NODBG to debug.';
        case 'SEND_START':
          return "The guest policy forbids it: NOSEND (bit 3) forbids migration; with DOMAIN (bit 4) or SEV (bit 5) the receiver's certificates must chain to the same OCA / to AMD, and its firmware must meet the policy's minimum API version.";
        case 'LAUNCH_START':
        case 'RECEIVE_START':
          return "The policy is not acceptable: reserved bits 6-15 set, a minimum API version (bits 16-31) above the firmware's, NOKS (bit 1) with a shared handle, or ES (bit 2) where SEV-ES is not available.";
        default:
          return 'The guest policy forbids this command (NODBG bit 0 for DBG_*, NOSEND bit 3 for SEND_*, ES bit 2 for SEV-ES commands).';
      }
    case SEV_RET.INVALID_LEN:
      return f.requiredLength !== undefined
        ? `Buffer too small: the firmware needs ${f.requiredLength} bytes.`
        : 'A length is wrong: a buffer is too small for what the firmware writes, or a length does not match what the command needs (16-byte multiples for guest data, 4096 for a VMSA, 0x824 for SEV certificates).';
    case SEV_RET.UNSUPPORTED:
      if (f.command === 'LAUNCH_UPDATE_VMSA') return 'LAUNCH_UPDATE_VMSA needs an SEV-ES guest: the launch policy lacks ES (bit 2).';
      if (f.command === 'LAUNCH_START' || f.command === 'RECEIVE_START')
        return 'The policy asks for SEV-ES (bit 2) but the platform was not initialised for SEV-ES.';
      return 'The firmware does not support this (feature or firmware version).';
    case SEV_RET.INVALID_ADDRESS:
      return 'The firmware needs 16-byte aligned addresses: align the guest range (offset and length multiples of 16).';
    case SEV_RET.BAD_MEASUREMENT:
      return "The packet's MAC did not verify: the header/transport were not made with this guest's session keys (TEK/TIK from LAUNCH_START/RECEIVE_START), or the measurement used is wrong.";
    case SEV_RET.INVALID_CERTIFICATE:
    case SEV_RET.BAD_SIGNATURE:
      return 'A certificate is malformed or its signature does not verify: check the PDH/PEK/OCA/CEK/ASK/ARK you passed and their order.';
    case SEV_RET.ALREADY_OWNED:
      return 'The platform is already owned (a PEK was imported): run factoryReset() before importing another.';
    case SEV_RET.INACTIVE:
      return 'The guest is not active (no ASID bound): it was never launched here, or its context was moved away.';
    case SEV_RET.INVALID_GUEST:
      return 'The guest handle is invalid: no such guest in the firmware (not launched, or already decommissioned).';
    case SEV_RET.RESOURCE_LIMIT:
      return 'The firmware ran out of guest handles or another resource: destroy unused SEV guests.';
    case SEV_RET.NO_FW_CALL:
      return 'The firmware was never called: the kernel stopped the command before it.';
    default:
      return `The firmware answered ${sevStatusName(fw)}: ${sevStatusDescription(fw)}.`;
  }
}

/** The hint for an errno `code` of a SEV command (undefined when nothing useful can be said). */
export function sevHint(code: string, f: SevFailure): string | undefined {
  const name = sevCommandDisplayName(f.via, f.command);
  const fw = f.errorWord === undefined ? SEV_RET.NO_FW_CALL : firmwareStatus(f.errorWord);
  const notEnabled =
    `SEV is not enabled on this host: KVM has no memory-encryption support here${f.hostSev ? ` (${f.hostSev})` : ''}. ` +
    'SEV needs an AMD CPU with SEV, its firmware (/dev/sev) and kvm_amd loaded with sev=1 (/sys/module/kvm_amd/parameters/sev).';
  switch (code) {
    case 'ENOTTY': {
      if (f.via === 'psp') return `${name}: /dev/sev does not accept this ioctl: the fd is not /dev/sev.`;
      if (f.sevEnabled === false) return notEnabled;
      let vmHint: string;
      if (f.command === 'ES_INIT') vmHint = 'SEV-ES is not available on this host (kvm_amd sev_es=N, or no SEV-ES ASIDs).';
      else if (f.command === 'LAUNCH_UPDATE_VMSA')
        vmHint = 'This VM is not an SEV-ES guest: run esInit(), or init2() on a KVM_X86_SEV_ES_VM, first.';
      else if (f.command.startsWith('SNP_'))
        vmHint =
          'This VM is not an SEV-SNP guest: create it as KVM_X86_SNP_VM and run init2() first (SNP_LAUNCH_START also answers ENOTTY when the firmware cannot create the guest context).';
      else
        vmHint =
          'This VM is not an SEV guest yet: run INIT first (init() on a KVM_X86_DEFAULT_VM, init2() on a KVM_X86_SEV_VM or SEV_ES_VM).';
      return f.sevEnabled === true ? vmHint : `Either: ${notEnabled} Or: ${vmHint}`;
    }
    case 'EBUSY':
      if (f.via === 'psp') {
        if (f.command === 'FACTORY_RESET')
          return 'FACTORY_RESET needs no running guests: the platform is WORKING (an SEV guest is active). Destroy every SEV VM first.';
        return 'The PSP is busy or was marked dead after a command timed out: every later command answers EBUSY until the ccp module is reloaded or the host reboots.';
      }
      if (INIT_COMMANDS.has(f.command)) {
        const es = f.command === 'ES_INIT' || (f.command === 'INIT2' && f.vmType !== undefined && f.vmType >= 3);
        return (
          `No free ${es ? 'SEV-ES' : 'SEV'} ASID: the ASIDs are exhausted (CPUID 0x8000001F: ECX = number of ASIDs, EDX = first SEV ASID; ` +
          `SEV-ES uses 1..EDX-1), or the misc cgroup limit "${es ? 'sev_es' : 'sev'}" (misc.max) is reached. Destroy unused SEV VMs, or raise the cgroup limit.`
        );
      }
      if (f.command === 'LAUNCH_UPDATE_VMSA' || f.command === 'SNP_LAUNCH_FINISH')
        return 'A vCPU is being created concurrently: retry once KVM_CREATE_VCPU has returned.';
      if (f.command.startsWith('VM_'))
        return 'The source or destination VM is already in a migration, or the misc cgroup could not be charged.';
      return undefined;
    case 'EBADF':
      if (f.vmClosed) return 'The VM fd is closed.';
      if (SEV_FD_COMMANDS.has(f.command)) {
        return f.sevFd === undefined
          ? `${name} needs an open /dev/sev in sev_fd, and none was given (sev_fd = -1): pass one to the constructor, new SevGuestCommands(vm, await SevPlatform.open(backend)).`
          : `sev_fd ${f.sevFd} is not an open /dev/sev fd.`;
      }
      if (f.command.startsWith('VM_')) return 'args[0] is not the fd of a KVM VM (it must be an open VM fd of this process).';
      if (f.via === 'kvm' && f.movedIn)
        return (
          `${name} uses the /dev/sev fd KVM recorded at LAUNCH_START/RECEIVE_START, and this VM got its SEV context by a MOVE ` +
          '(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM), which leaves that fd behind (arch/x86/kvm/svm/sev.c: sev_migrate_from()): after a MOVE ' +
          'the new VM needs its own /dev/sev fd, and only LAUNCH_START or RECEIVE_START records one, so the firmware commands that use it ' +
          '(GUEST_STATUS, DBG_*, SEND_*) answer EBADF here. The guest itself runs on; the fd given to SevGuestCommands serves only LAUNCH_START/RECEIVE_START.'
        );
      if (f.via === 'kvm')
        return `${name} uses the /dev/sev fd KVM recorded at LAUNCH_START/RECEIVE_START: the guest was not launched yet, or that fd was closed.`;
      return 'The /dev/sev fd is closed.';
    case 'EPERM':
      if (f.via === 'psp')
        return `${name} needs write access, and this /dev/sev fd was opened read-only: reopen it writable, SevPlatform.open(backend, { write: true }).`;
      if (f.command.startsWith('LOCAL_'))
        return 'Local migration refuses SEV-ES guests, a guest that was already sent, and a receiver that has a handle or registered regions.';
      return 'This VM is an SEV-SNP guest: it accepts only the SNP commands (ids >= 100); DBG_* is not allowed on SNP guests either.';
    case 'EACCES':
      return f.via === 'psp'
        ? 'No permission on /dev/sev (usually root-only, mode 0600): run as root, or grant your group access with a udev rule.'
        : undefined;
    case 'ENOENT':
      return f.via === 'psp'
        ? 'There is no /dev/sev: this host has no SEV firmware (the ccp driver is not loaded, the CPU has no SEV, or SEV is disabled in the firmware setup).'
        : undefined;
    case 'ENODEV':
      if (f.via === 'psp') {
        return f.command === 'SNP_SET_CONFIG' || f.command === 'SNP_VLEK_LOAD'
          ? 'SEV-SNP is not initialised on this host (kvm_amd sev_snp=N, or the firmware has no SNP).'
          : 'There is no PSP with SEV support behind /dev/sev.';
      }
      return undefined;
    case 'ENOMEM':
      if (PIN_COMMANDS.has(f.command)) {
        return (
          `KVM pins the guest pages for ${name} and ran over RLIMIT_MEMLOCK${f.memlock ? ` (${f.memlock})` : ''}: raise it (\`ulimit -l\`, systemd \`LimitMEMLOCK=\`), ` +
          'or give the process CAP_IPC_LOCK. An unmapped range also answers ENOMEM.'
        );
      }
      return undefined;
    case 'EIO':
      if (fw > 0) return firmwareHint(f, fw, name);
      if (f.via === 'kvm')
        return 'The VM is dead: its encryption context was moved to another VM (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM), or it is used from a process other than the one that created it.';
      return undefined;
    case 'ETIMEDOUT':
      return 'The PSP did not answer in time; the driver now treats it as dead (EBUSY from then on) until the ccp module is reloaded or the host reboots.';
    case 'ENOTSUPP':
      return f.command === 'GET_ID2' ? 'The firmware is older than API 0.16 and has no GET_ID2: use getId().' : undefined;
    case 'EFAULT':
      if (f.via === 'psp' && (f.command === 'PEK_CSR' || f.command === 'PDH_CERT_EXPORT'))
        return 'A length above 16 KiB answers EFAULT here.';
      return undefined;
    case 'EINVAL':
      return einvalHint(f, name);
    default:
      return undefined;
  }
}

function einvalHint(f: SevFailure, name: string): string | undefined {
  if (f.via === 'psp') {
    return (
      `The PSP driver refused ${name}: an unknown command for this kernel (SNP commands need Linux 6.11+), a missing data pointer, ` +
      `or a certificate/blob that is empty or larger than ${SEV_FW_BLOB_MAX_SIZE} bytes.`
    );
  }
  const mirror = MIRROR_OK.has(f.command)
    ? ''
    : ' Or this VM is a mirror (COPY_ENC_CONTEXT_FROM), which accepts only LAUNCH_UPDATE_VMSA, GUEST_STATUS and DBG_*.';
  const blobs = `a blob that is empty or larger than ${SEV_FW_BLOB_MAX_SIZE} bytes`;
  switch (f.command) {
    case 'INIT':
    case 'ES_INIT':
      if (f.vmType !== undefined && f.vmType !== 0)
        return `${name} works only on KVM_X86_DEFAULT_VM; this VM is ${vmTypeLabel(f.vmType)}: use init2().`;
      return `${name} refused: the VM already has vCPUs (initialise before KVM_CREATE_VCPU), or it is already initialised.`;
    case 'INIT2': {
      if (f.vmType !== undefined && (f.vmType < 2 || f.vmType > 4)) {
        return `INIT2 needs a VM created as KVM_X86_SEV_VM, KVM_X86_SEV_ES_VM or KVM_X86_SNP_VM; this one is ${vmTypeLabel(f.vmType)} (use init() / esInit() on it).`;
      }
      const a = f.init2;
      const got = a
        ? ` (got flags ${a.flags}, vmsa_features ${hex(a.vmsaFeatures)}, ghcb_version ${a.ghcbVersion}, VM type ${vmTypeLabel(f.vmType)})`
        : '';
      return (
        'INIT2 refused: flags must be 0; vmsa_features must be within the KVM_X86_SEV_VMSA_FEATURES attribute of /dev/kvm and 0 for KVM_X86_SEV_VM; ' +
        'ghcb_version must be <= 2, 0 for KVM_X86_SEV_VM (and >= 2 for SNP); the VM must not be initialised already nor have vCPUs' +
        got +
        '.'
      );
    }
    case 'LAUNCH_START':
    case 'RECEIVE_START':
      return `${name} refused: ${blobs} (the PDH/DH certificate or the session).${mirror}`;
    case 'LAUNCH_UPDATE_DATA':
      return `${name} refused: a zero length, an address range that overflows, or more pages than the host has RAM.${mirror}`;
    case 'LAUNCH_UPDATE_VMSA':
      return `${name} refused: a vCPU has guest debugging enabled, a non-default DR7, or is already protected (LAUNCH_UPDATE_VMSA runs once).`;
    case 'LAUNCH_SECRET':
      return `${name} refused: the guest range is not physically contiguous (keep it within one page), or ${blobs}.${mirror}`;
    case 'LAUNCH_MEASURE':
    case 'GET_ATTESTATION_REPORT':
      return `${name} refused: the buffer is larger than ${SEV_FW_BLOB_MAX_SIZE} bytes.${mirror}`;
    case 'DBG_DECRYPT':
    case 'DBG_ENCRYPT':
      return `${name} refused: a zero length, a NULL source/destination, or an address range that overflows.`;
    case 'SEND_START':
      return `${name} refused: a certificate is missing, or ${blobs}.${mirror}`;
    case 'SEND_UPDATE_DATA':
    case 'RECEIVE_UPDATE_DATA':
      return (
        `${name} refused: the guest range must be 1..4096 bytes within one page, and every buffer non-empty` +
        `${f.command === 'RECEIVE_UPDATE_DATA' ? ' (RECEIVE_UPDATE_DATA also answers EINVAL, not ENOTTY, when the VM is not an SEV guest)' : ''}.${mirror}`
      );
    case 'SEND_UPDATE_VMSA':
    case 'RECEIVE_UPDATE_VMSA':
    case 'CERT_EXPORT':
      return `KVM declares ${name} but does not implement it: it always answers EINVAL.`;
    case 'SNP_LAUNCH_START':
      return `${name} refused: flags must be 0, the policy must set RSVD_MBO (bit 17) and only supported bits, and the VM must not have a launch context yet.`;
    case 'SNP_LAUNCH_UPDATE':
      return `${name} refused: no launch context (run SNP_LAUNCH_START), a length that is 0 or not 4 KiB-aligned, flags != 0, a bad page type, an unaligned uaddr, or a memslot without guest_memfd.`;
    case 'SNP_LAUNCH_FINISH':
      return `${name} refused: no launch context, flags != 0, or a vCPU VMSA is already protected.`;
    case 'SNP_ENABLE_REQ_CERTS':
      return `${name} refused: the VM is not an SNP guest, or vCPUs already exist.`;
    case 'REG_REGION':
      return 'REG_REGION refused: this VM is a mirror, or the size is 0 or the range overflows.';
    case 'UNREG_REGION':
      return 'UNREG_REGION refused: no region was registered with exactly this address and size, or this VM is a mirror.';
    case 'VM_MOVE_ENC_CONTEXT_FROM':
    case 'VM_COPY_ENC_CONTEXT_FROM': {
      if (f.sevEnabled === false)
        return `${f.hostSev ? `${f.hostSev}: ` : ''}SEV is not enabled on this host, so KVM cannot move or share an encryption context (no vendor support for the capability).`;
      const common = 'the two VMs are the same, the destination is already an SEV guest, the source is not an SEV guest or is SNP';
      return f.command === 'VM_MOVE_ENC_CONTEXT_FROM'
        ? `MOVE refused: ${common}, the VM types differ, or (SEV-ES) the vCPU counts differ or a source vCPU has no LAUNCH_UPDATE_VMSA yet.`
        : `COPY refused: ${common}, the source is itself a mirror, or the mirror already has vCPUs.`;
    }
    default:
      if (f.command.startsWith('LOCAL_'))
        return `${name} refused (an unknown id on this kernel?): upstream Linux never merged local migration; id 22 is KVM_SEV_INIT2 there.`;
      if (/^\d+$/.test(f.command) || f.command.startsWith('UNKNOWN')) return 'KVM does not know this command id.';
      return mirror ? mirror.trim() : undefined;
  }
}

/** Duck-typed: an error a backend raised for a failed syscall. */
export function isKernelError(e: unknown): e is KvmError {
  if (e instanceof KvmError) return true;
  const x = e as { code?: unknown; errno?: unknown; syscall?: unknown } | null;
  return typeof x === 'object' && x !== null && typeof x.code === 'string' && typeof x.errno === 'number' && typeof x.syscall === 'string';
}

/**
 * Enrich a backend's error for a failed SEV call, in place, and return it: `sev`, `hint`, and the
 * firmware status appended to the message. Anything that is not a kernel error is returned untouched.
 */
export function enrichSevError<E>(err: E, f: SevFailure): E {
  if (!isKernelError(err) || err.sev !== undefined) return err; // already enriched (nested calls)
  const fwError = f.errorWord === undefined ? SEV_RET.NO_FW_CALL : firmwareStatus(f.errorWord);
  const fwErrorName = sevStatusName(fwError);
  err.sev = { command: f.command, fwError, fwErrorName };
  const hint = sevHint(err.code, f);
  if (hint !== undefined) err.hint = hint;
  const display = sevCommandDisplayName(f.via, f.command);
  let suffix: string;
  if (f.errorWord === undefined) suffix = `[${display}]`;
  else if (fwError === 0) suffix = `[${display}, firmware status SUCCESS: the kernel refused the call, not the firmware]`;
  else suffix = `[${display}, firmware status ${fwErrorName} (${fwError < 0 ? fwError : hex(fwError)}): ${sevStatusDescription(fwError)}]`;
  // V8 formats the stack on its first read, from the message of that moment: read it first, or a
  // stack first read below would already hold the suffix, and get it a second time.
  const stack = err.stack;
  const old = err.message;
  err.message = `${old} ${suffix}`;
  if (typeof stack === 'string' && stack.includes(old)) err.stack = stack.replace(old, err.message);
  return err;
}

/** Host facts for hints, from the backend's system view: kvm_amd's sev/sev_es parameters. */
export function hostSevFacts(system: SystemView): string | undefined {
  try {
    const sev = system.kvmAmdParam('sev');
    if (sev === undefined) return 'kvm_amd is not loaded';
    const es = system.kvmAmdParam('sev_es'); // absent on older kernels
    return `kvm_amd sev=${sev}${es !== undefined ? `, sev_es=${es}` : ''}`;
  } catch {
    return undefined;
  }
}

/** Host facts for hints, from the backend's system view: the process's RLIMIT_MEMLOCK. */
export function memlockFacts(system: SystemView): string | undefined {
  try {
    const limit = system.memlockLimit();
    if (limit === 'unlimited') return 'RLIMIT_MEMLOCK is unlimited';
    const n = Number(limit);
    return `RLIMIT_MEMLOCK is ${n >= 1 << 20 ? `${n / (1 << 20)} MiB` : `${n / 1024} KiB`}`;
  } catch {
    return undefined;
  }
}

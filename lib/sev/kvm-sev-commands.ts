/**
 * Thin typed calls for every KVM_SEV_* command of one VM (KVM_MEMORY_ENCRYPT_OP with a `kvm_sev_cmd`),
 * plus KVM_MEMORY_ENCRYPT_REG/UNREG_REGION and the encryption-context caps (MOVE 206, COPY 197).
 * No state is kept and no order is enforced: the kernel and the firmware answer, and a failure is
 * the backend's KvmError enriched with `sev` and `hint` (sev-error.ts). Bad input is refused with a
 * Node-style typed error before any ioctl.
 *
 * ```ts
 * import { Kvm, SevGuestCommands, SevPlatform, openHost } from 'kvm-sev';
 * import { SEV_POLICY } from 'kvm-sev/uapi';
 * using kvm = Kvm.open({ backend: (await openHost()).backend }); // native on an SEV host; else hybrid or mock
 * using vm = kvm.createVm();
 * using sev = SevPlatform.open(kvm.backend);
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const cmds = new SevGuestCommands(vm, sev);
 * if (!cmds.isEnabled()) throw new Error('no SEV here');
 * await cmds.init();                                           // KVM_SEV_INIT
 * await cmds.launchStart({ policy: SEV_POLICY.NODBG });        // KVM_SEV_LAUNCH_START
 * await cmds.launchUpdateData(mem.range(0n, 0x1000));          // encrypts the page in place
 * const measurement = await cmds.launchMeasure();              // { measure, mnonce }: hand it to the guest owner
 * await cmds.launchFinish();
 * console.log((await cmds.guestStatus()).stateName, measurement.measure.length); // RUNNING 32
 * ```
 */
import type { BackendFd } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import type { LaunchMeasurement } from '../crypto/measurement.js';
import { Vm } from '../kvm/vm.js';
import type { ArgInput, ValueOf } from '../uapi/codec.js';
import {
  KVM_CAP,
  KVM_SEV,
  PAGE_SIZE,
  SEV_FW_BLOB_MAX_SIZE,
  SEV_MEASUREMENT_SIZE,
  guestStateName,
  sevCommandName,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
} from '../uapi/constants.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../uapi/errors.js';
import type { IoctlStruct, MappingRange } from '../uapi/ioctl-arg.js';
import { SEV_RET } from '../uapi/sev-status.js';
import {
  kvm_sev_local_receive,
  kvm_sev_local_send,
  type LocalMigrationIds,
  type LocalMigrationSource,
} from '../uapi/local-migration-structs.js';
import { SevCommandTable } from '../uapi/sev-command-table.js';
import {
  kvm_sev_attestation_report,
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_secret,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
  kvm_sev_receive_start,
  kvm_sev_receive_update_data,
  kvm_sev_send_start,
  kvm_sev_send_update_data,
  kvm_sev_snp_launch_finish,
  kvm_sev_snp_launch_start,
  kvm_sev_snp_launch_update,
} from '../uapi/sev-structs.js';
import { SevPlatform } from './platform.js';
import { checkBlob, checkBytes, checkInt, checkObject, checkRange, checkU32, checkU64 } from '../uapi/args.js';
import { enrichSevError, firmwareStatus, hostSevFacts, isKernelError, memlockFacts, type SevFailure } from './sev-error.js';

/** Options of the {@link SevGuestCommands} constructor. */
export interface SevGuestCommandsOptions {
  /**
   * Opt in to the never-merged 2021 KVM_SEV_LOCAL_SEND/LOCAL_RECEIVE commands, for a kernel that has
   * them (the mock's `local-migration-2021` profile, or a patched kernel): `{ send: 22, receive: 23 }`
   * or `{ profile: 'local-migration-2021' }`. Naming the ids here is the explicit choice (22 is
   * KVM_SEV_INIT2 upstream, so init2() is then refused); the backend is told that this VM's kernel
   * has them (`Backend.setSevCommandTable`), for this VM only.
   */
  localMigration?: LocalMigrationSource;
}

/** KVM_SEV_INIT2 arguments (`struct kvm_sev_init`). */
export interface Init2Options {
  /** SVM_SEV_FEAT_* bits; must be within KVM_X86_SEV_VMSA_FEATURES, and 0 for KVM_X86_SEV_VM. Default 0. */
  vmsaFeatures?: bigint | number;
  /** Must be 0 (default). */
  flags?: number;
  /** GHCB protocol version: 0 (default: 2 for SEV-ES/SNP; required for SEV), 1 or 2. */
  ghcbVersion?: number;
}

/** KVM_SEV_LAUNCH_START arguments. */
export interface LaunchStartOptions {
  /** Guest policy (SEV_POLICY bits, u32). */
  policy: number;
  /** 0 (default): a new guest context; else share the keys of that guest (needs no NOKS). */
  handle?: number;
  /** The guest owner's PDH certificate (`dh_uaddr`). */
  dh?: Uint8Array;
  /** The launch session blob (`session_uaddr`). */
  session?: Uint8Array;
}

/** A secret/migration packet: header, guest-memory destination or source, transport buffer. */
export interface SevPacketOptions {
  header: Uint8Array;
  guest: MappingRange;
  trans: Uint8Array;
}

/**
 * VMs that got their SEV context by MOVE, whichever SevGuestCommands did it: KVM leaves the /dev/sev
 * fd of LAUNCH_START behind, so their EBADF hints say so.
 */
const moveDestinations = new WeakSet<Vm>();

/** KVM_SEV_LAUNCH_MEASURE's result, the shape every guest-owner function takes (`kvm-sev/owner`). */
export type { LaunchMeasurement } from '../crypto/measurement.js';

/** KVM_SEV_GUEST_STATUS result. */
export interface SevGuestStatus {
  handle: number;
  policy: number;
  /** GSTATE: 0 UNINIT … 6 SENT. */
  state: number;
  stateName: string;
}

/** KVM_SEV_SEND_START arguments: the receiver's certificates. */
export interface SendStartOptions {
  /** Written into the struct but ignored by KVM: the firmware writes back the guest's policy. */
  policy?: number;
  /** The receiver's PDH certificate. */
  pdhCert: Uint8Array;
  /** The receiver's PEK ‖ OCA ‖ CEK. */
  platCerts: Uint8Array;
  /** ASK ‖ ARK. */
  amdCerts: Uint8Array;
}

/** KVM_SEV_RECEIVE_START arguments. */
export interface ReceiveStartOptions {
  policy: number;
  handle?: number;
  /** The sender's PDH certificate. */
  pdh: Uint8Array;
  session: Uint8Array;
}

const SEV_FD_IDS: ReadonlySet<number> = new Set([
  KVM_SEV.LAUNCH_START,
  KVM_SEV.RECEIVE_START,
  KVM_SEV.SNP_LAUNCH_START,
  KVM_SEV.SNP_LAUNCH_UPDATE,
]);
const OFF_ERROR = kvm_sev_cmd.offsetOf('error');
const NO_FD = 0xffffffff;

function errorWordOf(cmd: IoctlStruct): number {
  return new DataView(cmd.bytes.buffer, cmd.bytes.byteOffset, cmd.bytes.byteLength).getUint32(OFF_ERROR, true);
}

/** One VM's SEV commands. See the module comment. */
export class SevGuestCommands {
  readonly vm: Vm;
  /** The /dev/sev fd passed as `sev_fd` (LAUNCH_START, RECEIVE_START, SNP_LAUNCH_START/UPDATE), if any. */
  readonly sevFd: BackendFd | undefined;
  /** The opted-in local-migration ids, if any. */
  readonly localMigration: LocalMigrationIds | undefined;
  /** The KVM_SEV command ids these calls use: upstream, or with the opted-in local-migration ids. */
  readonly commands: SevCommandTable;
  /** SEND_UPDATE_DATA's header length, once asked (per SEND_START). */
  private sendHeaderLength: number | undefined;

  /**
   * @param vm the VM the commands go to.
   * @param sev an open /dev/sev (a SevPlatform or its fd). Without it, sev_fd is -1 and LAUNCH_START /
   *   RECEIVE_START answer EBADF.
   */
  constructor(vm: Vm, sev?: BackendFd | SevPlatform | null, options: SevGuestCommandsOptions = {}) {
    if (!(vm instanceof Vm)) throw invalidArgType('vm', 'an instance of Vm', vm);
    let fd: BackendFd | undefined;
    if (sev instanceof SevPlatform) {
      if (sev.backend !== vm.backend) throw invalidArgValue('sev', sev, 'must be opened on the same backend as the VM');
      fd = sev.fd;
    } else if (sev !== undefined && sev !== null) {
      const f = sev as Partial<BackendFd>;
      if (typeof f !== 'object' || typeof f.kind !== 'string' || typeof f.close !== 'function') {
        throw invalidArgType('sev', 'a SevPlatform or a BackendFd of /dev/sev', sev);
      }
      if (f.kind !== 'sev') throw invalidArgValue('sev', f.kind, "must be an open /dev/sev fd (kind 'sev')");
      fd = sev;
    }
    const o = checkObject<SevGuestCommandsOptions>('options', options, true);
    let table = SevCommandTable.UPSTREAM;
    if (o.localMigration !== undefined) {
      const src = checkObject<LocalMigrationSource>('options.localMigration', o.localMigration);
      // Naming the ids in this option is the opt-in, collisions with upstream ids included.
      table = SevCommandTable.withLocalMigration('profile' in src ? src : { allowUpstreamCollision: true, ...src });
    }
    this.vm = vm;
    this.sevFd = fd;
    this.commands = table;
    this.localMigration = table.localMigration;
    if (this.localMigration) this.enableLocalMigration(this.localMigration);
  }

  /**
   * The opt-in says the kernel carries the 2021 patch. Refused where the kernel offers SEV VM types:
   * there id 22 is KVM_SEV_INIT2 and LOCAL_SEND would be read as INIT2. Then the backend is told
   * that this VM's kernel has the ids, so that it lays out their (8- and 16-byte) structs; a backend
   * that knows its kernel (the mock, the hybrid) refuses if its kernel has other ids.
   */
  private enableLocalMigration(ids: LocalMigrationIds): void {
    let types: number[] = [];
    try {
      types = this.vm.kvm.supportedVmTypes();
    } catch {
      /* a backend without /dev/kvm answers: nothing to contradict the opt-in */
    }
    if (
      (types.includes(KVM_X86_SEV_VM) || types.includes(KVM_X86_SEV_ES_VM)) &&
      (ids.LOCAL_SEND === KVM_SEV.INIT2 || ids.LOCAL_RECEIVE === KVM_SEV.INIT2)
    ) {
      throw new KvmSevError(
        'ERR_KVM_SEV_LOCAL_MIGRATION_COLLISION',
        `this kernel offers SEV VM types (KVM_CAP_VM_TYPES), so it has KVM_SEV_INIT2 as id 22: the 2021 KVM_SEV_LOCAL_SEND/RECEIVE (22/23) ` +
          'cannot exist on it. Move the context with moveEncContextFrom() (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) instead.',
      );
    }
    this.vm.backend.setSevCommandTable(this.vm.fd, this.commands);
  }

  // ----------------------------------------------------------------------------------------------
  // Plumbing

  private commandName(id: number): string {
    return this.commands.commandName(id) ?? String(id);
  }

  private sevFdWord(id: number): number {
    const fd = this.sevFd;
    if (fd === undefined) return NO_FD;
    if (fd.closed) {
      if (SEV_FD_IDS.has(id))
        throw new KvmSevError(
          'ERR_KVM_SEV_CLOSED',
          `the /dev/sev fd given to SevGuestCommands is closed (KVM_SEV_${this.commandName(id)} needs it)`,
        );
      return NO_FD;
    }
    return fd.fd;
  }

  /** The `kvm_sev_cmd` for `id`, `error` = 0 (the kernel does not zero it). */
  private build(id: number, data: IoctlStruct | null, local = false): IoctlStruct {
    const lm = this.localMigration;
    if (!local && lm && (id === lm.LOCAL_SEND || id === lm.LOCAL_RECEIVE)) {
      throw new KvmSevError(
        'ERR_KVM_SEV_LOCAL_MIGRATION_COLLISION',
        `command id ${id} is KVM_SEV_${this.commandName(id)} on the local-migration kernel this SevGuestCommands opted into, ` +
          `so KVM_SEV_${sevCommandName(id) ?? id} cannot be issued through it`,
      );
    }
    return this.commands.kvm_sev_cmd.arg({ id, data, error: 0, sev_fd: this.sevFdWord(id) });
  }

  /** Runs the ioctl; resolves to the error, if any. */
  private async exec(cmd: IoctlStruct): Promise<unknown> {
    try {
      await this.vm.memoryEncryptOpAsync(cmd);
      return undefined;
    } catch (e) {
      return e ?? new Error('ioctl failed');
    }
  }

  private probe(): boolean | undefined {
    if (this.vm.closed) return undefined;
    try {
      return this.isEnabled();
    } catch {
      return undefined;
    }
  }

  /** The synchronous part of an error's context. */
  private context(e: { code: string }, command: string, errorWord: number | undefined): SevFailure {
    const system = this.vm.backend.system;
    const probeNeeded = e.code === 'ENOTTY' || (e.code === 'EINVAL' && command.startsWith('VM_'));
    const sevEnabled = probeNeeded ? this.probe() : undefined;
    const sevFd = this.sevFd && !this.sevFd.closed ? this.sevFd.fd : undefined;
    return {
      via: 'kvm',
      command,
      ...(errorWord !== undefined ? { errorWord } : {}),
      vmType: this.vm.type,
      vmClosed: this.vm.closed,
      ...(moveDestinations.has(this.vm) ? { movedIn: true } : {}),
      ...(sevFd !== undefined ? { sevFd } : {}),
      ...(sevEnabled !== undefined ? { sevEnabled } : {}),
      ...(sevEnabled === false ? { hostSev: hostSevFacts(system) } : {}),
      ...(e.code === 'ENOMEM' ? { memlock: memlockFacts(system) } : {}),
    };
  }

  /** Enrich a failed KVM_MEMORY_ENCRYPT_OP (reads the guest/platform state for state errors). */
  private async fail(e: unknown, id: number, cmd: IoctlStruct, extra: Partial<SevFailure> = {}): Promise<unknown> {
    if (!isKernelError(e)) return e;
    const errorWord = errorWordOf(cmd);
    const f = { ...this.context(e, this.commandName(id), errorWord), ...extra };
    const fw = firmwareStatus(errorWord);
    if (e.code === 'EIO' && fw === SEV_RET.INVALID_GUEST_STATE && id !== KVM_SEV.GUEST_STATUS) {
      const s = await this.tryGuestState();
      if (s !== undefined) Object.assign(f, { guestState: s });
    }
    if (e.code === 'EIO' && fw === SEV_RET.INVALID_PLATFORM_STATE && this.sevFd && !this.sevFd.closed) {
      try {
        const st = await new SevPlatform(this.vm.backend, this.sevFd).platformStatus();
        Object.assign(f, { platformState: st.state, guestCount: st.guestCount });
      } catch {
        /* best effort */
      }
    }
    return enrichSevError(e, f);
  }

  private async tryGuestState(): Promise<number | undefined> {
    try {
      const data = kvm_sev_guest_status.arg({});
      const err = await this.exec(this.build(KVM_SEV.GUEST_STATUS, data));
      return err === undefined ? kvm_sev_guest_status.decode(data.bytes).state : undefined;
    } catch {
      return undefined;
    }
  }

  /** Issue a command; throws the enriched error. */
  private async issue(id: number, data: IoctlStruct | null = null, extra?: Partial<SevFailure>): Promise<void> {
    const cmd = this.build(id, data);
    const e = await this.exec(cmd);
    if (e !== undefined) throw await this.fail(e, id, cmd, extra);
  }

  /**
   * A length query: `data` carries zero lengths; the firmware answers INVALID_LEN (EIO) with the
   * lengths written back (a success counts too). Anything else is thrown, enriched.
   */
  private async query(id: number, data: IoctlStruct, lengths: () => number[]): Promise<number[]> {
    const cmd = this.build(id, data);
    const e = await this.exec(cmd);
    if (e !== undefined && !(isKernelError(e) && e.code === 'EIO' && firmwareStatus(errorWordOf(cmd)) === SEV_RET.INVALID_LEN)) {
      throw await this.fail(e, id, cmd);
    }
    const lens = lengths();
    for (const n of lens) {
      if (n === 0 || n > SEV_FW_BLOB_MAX_SIZE) {
        throw new KvmSevError(
          'ERR_KVM_SEV_LENGTH_QUERY',
          `KVM_SEV_${this.commandName(id)}: the length query answered ${n}, expected 1..${SEV_FW_BLOB_MAX_SIZE} (lengths: ${lens.join(', ')})`,
        );
      }
    }
    return lens;
  }

  private failSync(e: unknown, command: string): unknown {
    if (!isKernelError(e)) return e;
    return enrichSevError(e, this.context(e, command, undefined));
  }

  // ----------------------------------------------------------------------------------------------
  // Probe and raw access

  /** KVM_MEMORY_ENCRYPT_OP with a NULL argument: true if SEV is enabled on this host (0), false on ENOTTY. */
  isEnabled(): boolean {
    try {
      this.vm.memoryEncryptOp();
      return true;
    } catch (e) {
      if (isKernelError(e) && e.code === 'ENOTTY') return false;
      throw e;
    }
  }

  /**
   * Any KVM_SEV command id with a prebuilt `data` struct (or none): for the ids without a method
   * (SEND_UPDATE_VMSA 10, RECEIVE_UPDATE_VMSA 14 and CERT_EXPORT 19, which KVM declares but answers
   * EINVAL) and for experiments. `data`'s bytes hold what the kernel wrote back. Errors are enriched.
   */
  async command(id: number, data: IoctlStruct | null = null): Promise<void> {
    checkU32('id', id);
    if (data !== null && (typeof data !== 'object' || (data as { kind?: unknown }).kind !== 'struct')) {
      throw invalidArgType('data', "an IoctlStruct (a codec's arg()) or null", data);
    }
    await this.issue(id, data);
  }

  // ----------------------------------------------------------------------------------------------
  // Initialisation

  /** KVM_SEV_INIT (legacy; KVM_X86_DEFAULT_VM only): allocate an ASID, initialise the platform if needed. */
  async init(): Promise<void> {
    await this.issue(KVM_SEV.INIT);
  }

  /** KVM_SEV_ES_INIT (legacy; KVM_X86_DEFAULT_VM only): an SEV-ES guest. */
  async esInit(): Promise<void> {
    await this.issue(KVM_SEV.ES_INIT);
  }

  /** KVM_SEV_INIT2 (6.10+): on a VM created as KVM_X86_SEV_VM, SEV_ES_VM or SNP_VM. */
  async init2(options: Init2Options = {}): Promise<void> {
    const o = checkObject<Init2Options>('options', options, true);
    const vmsaFeatures = checkU64('options.vmsaFeatures', o.vmsaFeatures ?? 0n);
    const flags = checkU32('options.flags', o.flags ?? 0);
    const ghcbVersion = checkInt('options.ghcbVersion', o.ghcbVersion ?? 0, 0, 0xffff);
    const data = kvm_sev_init.arg({ vmsa_features: vmsaFeatures, flags, ghcb_version: ghcbVersion });
    await this.issue(KVM_SEV.INIT2, data, { init2: { vmsaFeatures, flags, ghcbVersion } });
  }

  // ----------------------------------------------------------------------------------------------
  // Launch

  /** KVM_SEV_LAUNCH_START: create the guest context (uses the /dev/sev fd). Returns the firmware's handle. */
  async launchStart(options: LaunchStartOptions): Promise<{ handle: number }> {
    const o = checkObject<LaunchStartOptions>('options', options);
    const policy = checkU32('options.policy', o.policy);
    const handle = checkU32('options.handle', o.handle ?? 0);
    const dh = o.dh === undefined ? null : checkBlob('options.dh', o.dh);
    const session = o.session === undefined ? null : checkBlob('options.session', o.session);
    const data = kvm_sev_launch_start.arg({ handle, policy, dh_uaddr: dh, session_uaddr: session });
    await this.issue(KVM_SEV.LAUNCH_START, data);
    return { handle: kvm_sev_launch_start.decode(data.bytes).handle };
  }

  /** KVM_SEV_LAUNCH_UPDATE_DATA: encrypt guest memory in place and extend the measurement (16-byte aligned for the firmware). */
  async launchUpdateData(range: MappingRange): Promise<void> {
    checkRange('range', range);
    await this.issue(KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: range }));
  }

  /** KVM_SEV_LAUNCH_UPDATE_VMSA (SEV-ES): encrypt and measure every vCPU's VMSA. */
  async launchUpdateVmsa(): Promise<void> {
    await this.issue(KVM_SEV.LAUNCH_UPDATE_VMSA);
  }

  /** KVM_SEV_LAUNCH_SECRET: inject the owner's secret packet into guest memory. */
  async launchSecret(options: SevPacketOptions): Promise<void> {
    const o = checkObject<SevPacketOptions>('options', options);
    const header = checkBlob('options.header', o.header);
    const guest = checkRange('options.guest', o.guest);
    const trans = checkBlob('options.trans', o.trans);
    await this.issue(KVM_SEV.LAUNCH_SECRET, kvm_sev_launch_secret.arg({ hdr_uaddr: header, guest_uaddr: guest, trans_uaddr: trans }));
  }

  /**
   * KVM_SEV_LAUNCH_MEASURE into a 48-byte buffer (HMAC ‖ mnonce). Only if the firmware answers
   * INVALID_LEN is the length queried (len = 0) and the call repeated with that length.
   */
  async launchMeasure(): Promise<LaunchMeasurement> {
    let buf = new Uint8Array(SEV_MEASUREMENT_SIZE);
    let data = kvm_sev_launch_measure.arg({ uaddr: buf });
    const cmd = this.build(KVM_SEV.LAUNCH_MEASURE, data);
    const e = await this.exec(cmd);
    if (e !== undefined) {
      if (!(isKernelError(e) && e.code === 'EIO' && firmwareStatus(errorWordOf(cmd)) === SEV_RET.INVALID_LEN)) {
        throw await this.fail(e, KVM_SEV.LAUNCH_MEASURE, cmd);
      }
      const q = kvm_sev_launch_measure.arg({});
      const [len] = await this.query(KVM_SEV.LAUNCH_MEASURE, q, () => [kvm_sev_launch_measure.decode(q.bytes).len]);
      buf = new Uint8Array(len!);
      data = kvm_sev_launch_measure.arg({ uaddr: buf });
      await this.issue(KVM_SEV.LAUNCH_MEASURE, data, { requiredLength: len! });
    }
    const written = kvm_sev_launch_measure.decode(data.bytes).len;
    if (written < SEV_MEASUREMENT_SIZE || buf.byteLength < SEV_MEASUREMENT_SIZE) {
      throw new KvmSevError(
        'ERR_KVM_SEV_SHORT_MEASUREMENT',
        `KVM_SEV_LAUNCH_MEASURE wrote ${written} bytes, expected ${SEV_MEASUREMENT_SIZE}`,
      );
    }
    return { measure: buf.slice(0, 32), mnonce: buf.slice(32, 48) };
  }

  /** KVM_SEV_LAUNCH_FINISH: the guest becomes runnable (RUNNING). */
  async launchFinish(): Promise<void> {
    await this.issue(KVM_SEV.LAUNCH_FINISH);
  }

  /** KVM_SEV_GUEST_STATUS: handle, policy and firmware state. */
  async guestStatus(): Promise<SevGuestStatus> {
    const data = kvm_sev_guest_status.arg({});
    await this.issue(KVM_SEV.GUEST_STATUS, data);
    const s = kvm_sev_guest_status.decode(data.bytes);
    return { handle: s.handle, policy: s.policy, state: s.state, stateName: guestStateName(s.state) ?? `UNKNOWN(${s.state})` };
  }

  // ----------------------------------------------------------------------------------------------
  // Debug, attestation

  /** KVM_SEV_DBG_DECRYPT: decrypt `src.length` bytes of guest memory into `dst` (refused under policy NODBG). */
  async dbgDecrypt(src: MappingRange, dst: Uint8Array): Promise<void> {
    checkRange('src', src);
    checkBlob('dst', dst, 0xffffffff);
    if (dst.byteLength < src.length) throw outOfRange('dst.byteLength', `>= ${src.length} (src.length)`, dst.byteLength);
    await this.issue(KVM_SEV.DBG_DECRYPT, kvm_sev_dbg.arg({ src_uaddr: src, dst_uaddr: dst, len: src.length }));
  }

  /** KVM_SEV_DBG_ENCRYPT: encrypt `src` into guest memory at `dst` (refused under policy NODBG). */
  async dbgEncrypt(src: Uint8Array, dst: MappingRange): Promise<void> {
    checkBlob('src', src, 0xffffffff);
    checkRange('dst', dst);
    if (dst.length < src.byteLength) throw outOfRange('dst.length', `>= ${src.byteLength} (src.byteLength)`, dst.length);
    await this.issue(KVM_SEV.DBG_ENCRYPT, kvm_sev_dbg.arg({ src_uaddr: src, dst_uaddr: dst, len: src.byteLength }));
  }

  /** KVM_SEV_GET_ATTESTATION_REPORT (firmware API >= 0.23): length query, then the report. */
  async getAttestationReport(mnonce: Uint8Array): Promise<Uint8Array> {
    checkBytes('mnonce', mnonce, 16);
    const q = kvm_sev_attestation_report.arg({ mnonce });
    const [len] = await this.query(KVM_SEV.GET_ATTESTATION_REPORT, q, () => [kvm_sev_attestation_report.decode(q.bytes).len]);
    const buf = new Uint8Array(len!);
    const data = kvm_sev_attestation_report.arg({ mnonce, uaddr: buf });
    await this.issue(KVM_SEV.GET_ATTESTATION_REPORT, data, { requiredLength: len! });
    const written = kvm_sev_attestation_report.decode(data.bytes).len;
    return written > 0 && written < buf.byteLength ? buf.subarray(0, written) : buf;
  }

  // ----------------------------------------------------------------------------------------------
  // Migration

  /** KVM_SEV_SEND_START: length query for the session (as QEMU does), then start sending. */
  async sendStart(options: SendStartOptions): Promise<{ session: Uint8Array; policy: number }> {
    const o = checkObject<SendStartOptions>('options', options);
    const policy = checkU32('options.policy', o.policy ?? 0);
    const pdhCert = checkBlob('options.pdhCert', o.pdhCert);
    const platCerts = checkBlob('options.platCerts', o.platCerts);
    const amdCerts = checkBlob('options.amdCerts', o.amdCerts);
    const q = kvm_sev_send_start.arg({ policy });
    const [len] = await this.query(KVM_SEV.SEND_START, q, () => [kvm_sev_send_start.decode(q.bytes).session_len]);
    const session = new Uint8Array(len!);
    const data = kvm_sev_send_start.arg({
      policy,
      pdh_cert_uaddr: pdhCert,
      plat_certs_uaddr: platCerts,
      amd_certs_uaddr: amdCerts,
      session_uaddr: session,
    });
    this.sendHeaderLength = undefined;
    await this.issue(KVM_SEV.SEND_START, data, { requiredLength: len! });
    const out = kvm_sev_send_start.decode(data.bytes);
    const n = out.session_len;
    return { session: n > 0 && n < session.byteLength ? session.subarray(0, n) : session, policy: out.policy };
  }

  /** KVM_SEV_SEND_UPDATE_DATA: length query for the header, then one packet of at most one page. */
  async sendUpdateData(range: MappingRange): Promise<{ header: Uint8Array; trans: Uint8Array }> {
    checkPageRange('range', range);
    // The header length is asked once per outgoing context, as QEMU does: each query is a PSP command,
    // and on a PSP that moves a few hundred pages a second a query per page would halve the rate.
    let hdrLen = this.sendHeaderLength;
    if (hdrLen === undefined) {
      const q = kvm_sev_send_update_data.arg({});
      [hdrLen] = await this.query(KVM_SEV.SEND_UPDATE_DATA, q, () => [kvm_sev_send_update_data.decode(q.bytes).hdr_len]);
      this.sendHeaderLength = hdrLen;
    }
    const header = new Uint8Array(hdrLen!);
    const trans = new Uint8Array(range.length);
    await this.issue(KVM_SEV.SEND_UPDATE_DATA, kvm_sev_send_update_data.arg({ hdr_uaddr: header, guest_uaddr: range, trans_uaddr: trans }));
    return { header, trans };
  }

  /** KVM_SEV_SEND_FINISH: the guest becomes SENT. */
  async sendFinish(): Promise<void> {
    await this.issue(KVM_SEV.SEND_FINISH);
  }

  /** KVM_SEV_SEND_CANCEL: back to RUNNING after SEND_START, before SEND_FINISH. */
  async sendCancel(): Promise<void> {
    await this.issue(KVM_SEV.SEND_CANCEL);
  }

  /** KVM_SEV_RECEIVE_START: create the incoming guest's context (uses the /dev/sev fd). */
  async receiveStart(options: ReceiveStartOptions): Promise<{ handle: number }> {
    const o = checkObject<ReceiveStartOptions>('options', options);
    const policy = checkU32('options.policy', o.policy);
    const handle = checkU32('options.handle', o.handle ?? 0);
    const pdh = checkBlob('options.pdh', o.pdh);
    const session = checkBlob('options.session', o.session);
    const data = kvm_sev_receive_start.arg({ handle, policy, pdh_uaddr: pdh, session_uaddr: session });
    await this.issue(KVM_SEV.RECEIVE_START, data);
    return { handle: kvm_sev_receive_start.decode(data.bytes).handle };
  }

  /** KVM_SEV_RECEIVE_UPDATE_DATA: one packet into guest memory (at most one page). */
  async receiveUpdateData(options: SevPacketOptions): Promise<void> {
    const o = checkObject<SevPacketOptions>('options', options);
    const header = checkBlob('options.header', o.header);
    const guest = checkPageRange('options.guest', o.guest);
    const trans = checkBlob('options.trans', o.trans);
    await this.issue(
      KVM_SEV.RECEIVE_UPDATE_DATA,
      kvm_sev_receive_update_data.arg({ hdr_uaddr: header, guest_uaddr: guest, trans_uaddr: trans }),
    );
  }

  /** KVM_SEV_RECEIVE_FINISH: the received guest becomes RUNNING. */
  async receiveFinish(): Promise<void> {
    await this.issue(KVM_SEV.RECEIVE_FINISH);
  }

  // ----------------------------------------------------------------------------------------------
  // SEV-SNP (thin: the struct in, the written-back struct out)

  /** KVM_SEV_SNP_LAUNCH_START (6.11+; uses the /dev/sev fd). */
  async snpLaunchStart(params: ArgInput<typeof kvm_sev_snp_launch_start>): Promise<ValueOf<typeof kvm_sev_snp_launch_start>> {
    checkObject('params', params);
    const data = kvm_sev_snp_launch_start.arg(params);
    await this.issue(KVM_SEV.SNP_LAUNCH_START, data);
    return kvm_sev_snp_launch_start.decode(data.bytes);
  }

  /**
   * KVM_SEV_SNP_LAUNCH_UPDATE (6.11+): `uaddr` is guest memory (a MappingRange). KVM may do part of
   * the range: the result holds the advanced gfn_start and the remaining len (loop until len is 0).
   */
  async snpLaunchUpdate(params: ArgInput<typeof kvm_sev_snp_launch_update>): Promise<ValueOf<typeof kvm_sev_snp_launch_update>> {
    const p = checkObject<ArgInput<typeof kvm_sev_snp_launch_update>>('params', params);
    if (p.uaddr !== undefined && p.uaddr !== null) checkRange('params.uaddr', p.uaddr, Number.MAX_SAFE_INTEGER);
    const data = kvm_sev_snp_launch_update.arg(p);
    await this.issue(KVM_SEV.SNP_LAUNCH_UPDATE, data);
    return kvm_sev_snp_launch_update.decode(data.bytes);
  }

  /** KVM_SEV_SNP_LAUNCH_FINISH (6.11+): optional ID block (96 bytes) and ID auth (4096 bytes), host_data. */
  async snpLaunchFinish(params: ArgInput<typeof kvm_sev_snp_launch_finish> = {}): Promise<ValueOf<typeof kvm_sev_snp_launch_finish>> {
    checkObject('params', params, true);
    const data = kvm_sev_snp_launch_finish.arg(params);
    await this.issue(KVM_SEV.SNP_LAUNCH_FINISH, data);
    return kvm_sev_snp_launch_finish.decode(data.bytes);
  }

  /** KVM_SEV_SNP_ENABLE_REQ_CERTS (7.2): enable KVM_EXIT_SNP_REQ_CERTS (before any vCPU). */
  async snpEnableReqCerts(): Promise<void> {
    await this.issue(KVM_SEV.SNP_ENABLE_REQ_CERTS);
  }

  // ----------------------------------------------------------------------------------------------
  // Local migration (the 2021 proposal; opt-in only)

  private requireLocal(what: string): LocalMigrationIds {
    if (this.localMigration) return this.localMigration;
    throw new KvmSevError(
      'ERR_KVM_SEV_NO_LOCAL_MIGRATION',
      `${what}: KVM_SEV_LOCAL_SEND/LOCAL_RECEIVE were never merged into Linux. The 2021 patch numbered them 22 and 23, ` +
        'and 22 is KVM_SEV_INIT2 upstream (6.10+), so they are off unless chosen explicitly: ' +
        "new SevGuestCommands(vm, sev, { localMigration: { send: 22, receive: 23 } }) (or { profile: 'local-migration-2021' }), " +
        "on a kernel that has them (a patched one, or the mock's 'local-migration-2021' profile); the backend is then told, for this VM " +
        '(Backend.setSevCommandTable). Upstream, move a context with moveEncContextFrom() (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM).',
    );
  }

  private async issueLocal(id: number, data: IoctlStruct): Promise<void> {
    const cmd = this.build(id, data, true);
    const e = await this.exec(cmd);
    if (e !== undefined) throw await this.fail(e, id, cmd);
  }

  /** KVM_SEV_LOCAL_SEND (opt-in): returns the 64-bit token for the receiving VM (0 means none). */
  async localSend(): Promise<bigint> {
    const ids = this.requireLocal('localSend()');
    const data = kvm_sev_local_send.arg({});
    await this.issueLocal(ids.LOCAL_SEND, data);
    return kvm_sev_local_send.decode(data.bytes).info_token;
  }

  /** KVM_SEV_LOCAL_RECEIVE (opt-in): take over the sent context; returns the guest handle. */
  async localReceive(token: bigint): Promise<{ handle: number }> {
    const ids = this.requireLocal('localReceive()');
    if (typeof token !== 'bigint') throw invalidArgType('token', 'bigint', token);
    if (token <= 0n || token > 0xffffffffffffffffn) throw outOfRange('token', 'a non-zero u64 (0 means no token)', token);
    const data = kvm_sev_local_receive.arg({ info_token: token });
    await this.issueLocal(ids.LOCAL_RECEIVE, data);
    return { handle: kvm_sev_local_receive.decode(data.bytes).handle };
  }

  // ----------------------------------------------------------------------------------------------
  // Regions and encryption contexts (no firmware: synchronous)

  /** KVM_MEMORY_ENCRYPT_REG_REGION: pin guest memory for the guest's lifetime (counts against RLIMIT_MEMLOCK). */
  registerRegion(range: MappingRange): void {
    checkRange('range', range, Number.MAX_SAFE_INTEGER);
    try {
      this.vm.registerEncRegion(range);
    } catch (e) {
      throw this.failSync(e, 'REG_REGION');
    }
  }

  /** KVM_MEMORY_ENCRYPT_UNREG_REGION: the exact range registered before. */
  unregisterRegion(range: MappingRange): void {
    checkRange('range', range, Number.MAX_SAFE_INTEGER);
    try {
      this.vm.unregisterEncRegion(range);
    } catch (e) {
      throw this.failSync(e, 'UNREG_REGION');
    }
  }

  private checkPeer(name: string, other: unknown): Vm {
    if (!(other instanceof Vm)) throw invalidArgType(name, 'an instance of Vm', other);
    if (other === this.vm) throw invalidArgValue(name, other.fd.fd, 'must be another VM than the one the context goes to');
    if (other.closed) throw invalidArgValue(name, other.fd.fd, 'is a closed VM');
    if (other.backend !== this.vm.backend) throw invalidArgValue(name, other.fd.fd, 'must be a VM of the same backend');
    return other;
  }

  /**
   * KVM_ENABLE_CAP(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM, args[0] = source fd): move `source`'s SEV context
   * into this VM. The source is dead afterwards (all its ioctls answer EIO).
   */
  moveEncContextFrom(source: Vm): void {
    const src = this.checkPeer('source', source);
    try {
      this.vm.enableCap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, [BigInt(src.fd.fd)]);
    } catch (e) {
      throw this.failSync(e, 'VM_MOVE_ENC_CONTEXT_FROM');
    }
    moveDestinations.add(this.vm);
  }

  /**
   * The same move from a VM fd rather than a Vm object: the old VMM's VM fd received over a Unix
   * socket (SCM_RIGHTS) in a VMM handoff.
   */
  moveEncContextFromFd(source: BackendFd): void {
    if (!source || typeof source !== 'object' || typeof source.fd !== 'number')
      throw invalidArgType('source', 'a VM fd (BackendFd)', source);
    if (source.kind !== 'vm') throw invalidArgValue('source', source.kind, 'must be a VM fd');
    try {
      this.vm.enableCap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, [BigInt(source.fd)]);
    } catch (e) {
      throw this.failSync(e, 'VM_MOVE_ENC_CONTEXT_FROM');
    }
    moveDestinations.add(this.vm);
  }

  /**
   * KVM_ENABLE_CAP(KVM_CAP_VM_COPY_ENC_CONTEXT_FROM, args[0] = owner fd): make this VM a mirror sharing
   * `owner`'s SEV context (before creating vCPUs here).
   */
  copyEncContextFrom(owner: Vm): void {
    const src = this.checkPeer('owner', owner);
    try {
      this.vm.enableCap(KVM_CAP.VM_COPY_ENC_CONTEXT_FROM, [BigInt(src.fd.fd)]);
    } catch (e) {
      throw this.failSync(e, 'VM_COPY_ENC_CONTEXT_FROM');
    }
  }
}

/** A guest range KVM accepts for one SEND/RECEIVE_UPDATE_DATA packet: 1..4096 bytes within one page. */
function checkPageRange(name: string, v: unknown): MappingRange {
  const r = checkRange(name, v, PAGE_SIZE);
  if ((r.offset % PAGE_SIZE) + r.length > PAGE_SIZE) {
    throw invalidArgValue(name, r, 'must lie within one 4 KiB page (KVM moves one page per packet)');
  }
  return r;
}

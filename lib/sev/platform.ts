/**
 * The SEV platform: `/dev/sev` commands through SEV_ISSUE_CMD (`struct sev_issue_cmd` pointing at the
 * command's `sev_user_data_*` struct). Every call is async (the PSP can take long) and a failure is the
 * backend's KvmError enriched with `sev` and `hint` (see sev-error.ts).
 *
 * ```ts
 * import { SevPlatform, openHost } from 'kvm-sev';
 * await using sev = SevPlatform.open((await openHost()).backend); // native on an SEV host; else hybrid or mock
 * const st = await sev.platformStatus(); // { apiMajor: 1, apiMinor: 55, build: 21, state: 0, stateName: 'UNINIT', … }
 * const { pdh, certChain } = await sev.pdhCertExport();
 * console.log(st.stateName, pdh.length, certChain.length); // UNINIT 2084 6252: the PDH; PEK ‖ OCA ‖ CEK
 * ```
 */
import type { Backend, BackendFd } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import {
  SEV_CMD,
  SEV_STATUS_FLAGS_CONFIG_ES,
  SEV_STATUS_FLAGS_OWNER,
  platformStateName,
  sevPlatformCommandName,
} from '../uapi/constants.js';
import { invalidArgType, invalidArgValue } from '../uapi/errors.js';
import type { ArgInput, ValueOf } from '../uapi/codec.js';
import type { IoctlStruct } from '../uapi/ioctl-arg.js';
import { SEV_ISSUE_CMD } from '../uapi/ioctls.js';
import { SEV_RET } from '../uapi/sev-status.js';
import {
  SEV_SNP_WRAPPED_VLEK_HASHSTICK_SIZE,
  sev_issue_cmd,
  sev_user_data_get_id,
  sev_user_data_get_id2,
  sev_user_data_pdh_cert_export,
  sev_user_data_pek_cert_import,
  sev_user_data_pek_csr,
  sev_user_data_snp_config,
  sev_user_data_snp_status,
  sev_user_data_snp_vlek_load,
  sev_user_data_status,
} from '../uapi/psp-structs.js';
import { checkBlob, checkBytes, checkObject } from '../uapi/args.js';
import { enrichSevError, firmwareStatus, isKernelError, type SevFailure } from './sev-error.js';

/** SEV_PLATFORM_STATUS, decoded. */
export interface SevPlatformStatus {
  apiMajor: number;
  apiMinor: number;
  build: number;
  /** PSTATE: 0 UNINIT, 1 INIT, 2 WORKING. */
  state: number;
  stateName: string;
  /** The raw u32 at bytes 3..6. */
  flags: number;
  /** flags bit 0: the platform is externally owned (a PEK was imported). */
  owner: boolean;
  /** flags & SEV_STATUS_FLAGS_CONFIG_ES: the platform was initialised for SEV-ES. */
  configEs: boolean;
  guestCount: number;
}

/** Options of {@link SevPlatform.open}. */
export interface SevPlatformOpenOptions {
  /** Open read-write (default). PLATFORM_STATUS, GET_ID*, PDH_CERT_EXPORT (INIT platform) work read-only. */
  write?: boolean;
}

/** SNP_PLATFORM_STATUS, as the struct decodes. */
export type SnpPlatformStatus = ValueOf<typeof sev_user_data_snp_status>;

const OFF_ERROR = sev_issue_cmd.offsetOf('error');

/** An open `/dev/sev`: the AMD Secure Processor's platform commands. */
export class SevPlatform implements Disposable, AsyncDisposable {
  readonly backend: Backend;
  /** The /dev/sev fd (what SevGuestCommands passes in `kvm_sev_cmd.sev_fd`). */
  readonly fd: BackendFd;

  /** Wrap an already open /dev/sev fd (e.g. one received over SCM_RIGHTS). Closing the platform closes it. */
  constructor(backend: Backend, fd: BackendFd) {
    if (typeof backend !== 'object' || backend === null || typeof backend.ioctlAsync !== 'function') {
      throw invalidArgType('backend', 'a Backend', backend);
    }
    if (typeof fd !== 'object' || fd === null || typeof fd.kind !== 'string') throw invalidArgType('fd', 'a BackendFd', fd);
    if (fd.kind !== 'sev') throw invalidArgValue('fd', fd.kind, "must be an open /dev/sev fd (kind 'sev')");
    this.backend = backend;
    this.fd = fd;
  }

  /** open(2) of /dev/sev. ENOENT (no SEV firmware) and EACCES (permissions) come back with a hint. */
  static open(backend: Backend, options: SevPlatformOpenOptions = {}): SevPlatform {
    if (typeof backend !== 'object' || backend === null || typeof backend.open !== 'function') {
      throw invalidArgType('backend', 'a Backend', backend);
    }
    const o = checkObject<SevPlatformOpenOptions>('options', options, true);
    const write = o.write ?? true;
    if (typeof write !== 'boolean') throw invalidArgType('options.write', 'boolean', write);
    let fd: BackendFd;
    try {
      fd = backend.open('/dev/sev', { write });
    } catch (e) {
      throw enrichSevError(e, { via: 'psp', command: 'OPEN' });
    }
    return new SevPlatform(backend, fd);
  }

  get closed(): boolean {
    return this.fd.closed;
  }
  /** False for a read-only open: commands that need write access answer EPERM. */
  get writable(): boolean {
    return this.fd.writable;
  }

  /** SEV_ISSUE_CMD; throws the raw backend error (with the written-back error word attached for the caller). */
  private async raw(cmd: number, data: IoctlStruct | null): Promise<{ arg: IoctlStruct; error?: unknown }> {
    const arg = sev_issue_cmd.arg({ cmd, data, error: 0 });
    try {
      await this.backend.ioctlAsync(this.fd, SEV_ISSUE_CMD, arg);
      return { arg };
    } catch (e) {
      return { arg, error: e };
    }
  }

  private errorWord(arg: IoctlStruct): number {
    return new DataView(arg.bytes.buffer, arg.bytes.byteOffset, arg.bytes.byteLength).getUint32(OFF_ERROR, true);
  }

  /** Enrich a failure; reads the platform state for INVALID_PLATFORM_STATE (best effort). */
  private async fail(e: unknown, cmd: number, arg: IoctlStruct, extra: Partial<SevFailure> = {}): Promise<unknown> {
    if (!isKernelError(e)) return e;
    const command = sevPlatformCommandName(cmd) ?? String(cmd);
    const errorWord = this.errorWord(arg);
    let state: { platformState?: number; guestCount?: number } = {};
    if (e.code === 'EIO' && firmwareStatus(errorWord) === SEV_RET.INVALID_PLATFORM_STATE && cmd !== SEV_CMD.PLATFORM_STATUS) {
      try {
        const st = await this.platformStatus();
        state = { platformState: st.state, guestCount: st.guestCount };
      } catch {
        /* best effort */
      }
    }
    return enrichSevError(e, { via: 'psp', command, errorWord, ...state, ...extra });
  }

  /** Issue a command; enriched error on failure. */
  private async issue(cmd: number, data: IoctlStruct | null = null): Promise<void> {
    this.checkOpen();
    const r = await this.raw(cmd, data);
    if (r.error !== undefined) throw await this.fail(r.error, cmd, r.arg);
  }

  /**
   * A length query: the command with zero lengths. The firmware answers INVALID_LEN (EIO) with the
   * lengths written back; a success counts too. Anything else is thrown, enriched.
   */
  private async query(cmd: number, data: IoctlStruct, lengths: () => number[]): Promise<number[]> {
    this.checkOpen();
    const r = await this.raw(cmd, data);
    if (r.error !== undefined) {
      const e = r.error;
      if (!(isKernelError(e) && e.code === 'EIO' && firmwareStatus(this.errorWord(r.arg)) === SEV_RET.INVALID_LEN)) {
        throw await this.fail(e, cmd, r.arg);
      }
    }
    const lens = lengths();
    if (lens.some((n) => n === 0)) {
      throw new KvmSevError(
        'ERR_KVM_SEV_LENGTH_QUERY',
        `SEV_${sevPlatformCommandName(cmd)}: the length query returned a zero length (${lens.join(', ')})`,
      );
    }
    return lens;
  }

  private checkOpen(): void {
    if (this.fd.closed) throw new KvmSevError('ERR_KVM_SEV_CLOSED', 'the /dev/sev fd is closed');
  }

  /** SEV_PLATFORM_STATUS (no write access needed). */
  async platformStatus(): Promise<SevPlatformStatus> {
    const data = sev_user_data_status.arg({});
    await this.issue(SEV_CMD.PLATFORM_STATUS, data);
    const s = sev_user_data_status.decode(data.bytes);
    return {
      apiMajor: s.api_major,
      apiMinor: s.api_minor,
      build: s.build,
      state: s.state,
      stateName: platformStateName(s.state) ?? `UNKNOWN(${s.state})`,
      flags: s.flags,
      owner: (s.flags & SEV_STATUS_FLAGS_OWNER) !== 0,
      configEs: (s.flags & SEV_STATUS_FLAGS_CONFIG_ES) !== 0,
      guestCount: s.guest_count,
    };
  }

  /** SEV_PEK_GEN: new OCA, PEK and PDH (needs write access and a platform in INIT). */
  async pekGen(): Promise<void> {
    await this.issue(SEV_CMD.PEK_GEN);
  }

  /** SEV_PDH_GEN: a new PDH (needs write access). */
  async pdhGen(): Promise<void> {
    await this.issue(SEV_CMD.PDH_GEN);
  }

  /** SEV_PEK_CSR: the PEK certificate signing request (length query first; needs write access). */
  async pekCsr(): Promise<Uint8Array> {
    const q = sev_user_data_pek_csr.arg({});
    const [len] = await this.query(SEV_CMD.PEK_CSR, q, () => [sev_user_data_pek_csr.decode(q.bytes).length]);
    const buf = new Uint8Array(len!);
    const data = sev_user_data_pek_csr.arg({ address: buf });
    await this.issue(SEV_CMD.PEK_CSR, data);
    const written = sev_user_data_pek_csr.decode(data.bytes).length;
    return written > 0 && written < buf.byteLength ? buf.subarray(0, written) : buf;
  }

  /** SEV_PDH_CERT_EXPORT: the PDH certificate and the chain PEK ‖ OCA ‖ CEK (length query first). */
  async pdhCertExport(): Promise<{ pdh: Uint8Array; certChain: Uint8Array }> {
    const q = sev_user_data_pdh_cert_export.arg({});
    const [pdhLen, chainLen] = await this.query(SEV_CMD.PDH_CERT_EXPORT, q, () => {
      const v = sev_user_data_pdh_cert_export.decode(q.bytes);
      return [v.pdh_cert_len, v.cert_chain_len];
    });
    const pdh = new Uint8Array(pdhLen!);
    const certChain = new Uint8Array(chainLen!);
    await this.issue(SEV_CMD.PDH_CERT_EXPORT, sev_user_data_pdh_cert_export.arg({ pdh_cert_address: pdh, cert_chain_address: certChain }));
    return { pdh, certChain };
  }

  /** SEV_PEK_CERT_IMPORT: take ownership with an OCA-signed PEK (needs write access, platform INIT). */
  async pekCertImport(pek: Uint8Array, oca: Uint8Array): Promise<void> {
    checkBlob('pek', pek);
    checkBlob('oca', oca);
    await this.issue(SEV_CMD.PEK_CERT_IMPORT, sev_user_data_pek_cert_import.arg({ pek_cert_address: pek, oca_cert_address: oca }));
  }

  /** SEV_GET_ID (deprecated): the two 64-byte chip ids. */
  async getId(): Promise<{ socket1: Uint8Array; socket2: Uint8Array }> {
    const data = sev_user_data_get_id.arg({});
    await this.issue(SEV_CMD.GET_ID, data);
    return sev_user_data_get_id.decode(data.bytes);
  }

  /** SEV_GET_ID2: the chip id (length query first; the firmware needs API >= 0.16, else ENOTSUPP). */
  async getId2(): Promise<Uint8Array> {
    const q = sev_user_data_get_id2.arg({});
    const [len] = await this.query(SEV_CMD.GET_ID2, q, () => [sev_user_data_get_id2.decode(q.bytes).length]);
    const buf = new Uint8Array(len!);
    await this.issue(SEV_CMD.GET_ID2, sev_user_data_get_id2.arg({ address: buf }));
    return buf;
  }

  /** SEV_FACTORY_RESET: delete the OCA, PEK and PDH (needs write access; EBUSY while guests run). */
  async factoryReset(): Promise<void> {
    await this.issue(SEV_CMD.FACTORY_RESET);
  }

  /** SNP_PLATFORM_STATUS (6.11+), the struct as decoded. */
  async snpPlatformStatus(): Promise<SnpPlatformStatus> {
    const data = sev_user_data_snp_status.arg({});
    await this.issue(SEV_CMD.SNP_PLATFORM_STATUS, data);
    return sev_user_data_snp_status.decode(data.bytes);
  }

  /** SNP_COMMIT (6.11+): commit the current firmware and TCB as the minimum. */
  async snpCommit(): Promise<void> {
    await this.issue(SEV_CMD.SNP_COMMIT);
  }

  /** SNP_SET_CONFIG (6.11+): `reported_tcb`, `flags` (SNP_CONFIG_FLAG) as the struct takes them. Needs write access. */
  async snpSetConfig(config: ArgInput<typeof sev_user_data_snp_config>): Promise<void> {
    checkObject('config', config);
    const data = sev_user_data_snp_config.arg(config);
    await this.issue(SEV_CMD.SNP_SET_CONFIG, data);
  }

  /** SNP_VLEK_LOAD (6.11+): load a wrapped VLEK hashstick (exactly 432 bytes). Needs write access. */
  async snpVlekLoad(wrappedHashstick: Uint8Array): Promise<void> {
    checkBytes('wrappedHashstick', wrappedHashstick, SEV_SNP_WRAPPED_VLEK_HASHSTICK_SIZE);
    const data = sev_user_data_snp_vlek_load.arg({
      len: sev_user_data_snp_vlek_load.size,
      vlek_wrapped_version: 0,
      vlek_wrapped_address: wrappedHashstick,
    });
    await this.issue(SEV_CMD.SNP_VLEK_LOAD, data);
  }

  /** Idempotent. */
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

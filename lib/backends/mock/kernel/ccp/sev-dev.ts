/**
 * /dev/sev: the PSP driver (drivers/crypto/ccp/sev-dev.c: sev_ioctl() and its sev_ioctl_do_*()
 * handlers) in front of the mock firmware. One global mutex makes commands sequential (JS already is; a throttled
 * host also keeps one PSP timeline). Every firmware command goes through {@link SevDriver.do}, which
 * is where fault injection lives: the Nth command fails with a chosen status (EIO, `error` = status,
 * the firmware is not called), and a PSP time-out answers ETIMEDOUT with `error` 0 once and marks
 * the PSP dead, after which every command answers EBUSY without touching `error`, as the driver does.
 */
import { SEV_CMD, SEV_FW_BLOB_MAX_SIZE, type SevFirmwareCommandName } from '../../../../uapi/constants.js';
import {
  sev_issue_cmd,
  sev_user_data_get_id2,
  sev_user_data_pdh_cert_export,
  sev_user_data_pek_cert_import,
  sev_user_data_pek_csr,
  sev_user_data_snp_vlek_load,
  sev_user_data_status,
} from '../../../../uapi/psp-structs.js';
import { E, fail } from '../common/errno.js';
import type { FwResult, SevFirmware } from '../../psp/api.js';
import type { UserMemory } from '../common/user-memory.js';

export interface FaultOptions {
  /** Fail the `nth` firmware command (1-based, every command counts, INIT and DF_FLUSH included). */
  failCommand?: { nth: number; status: number };
  /** The first `pspTimeoutAfter` commands complete; the next one times out. */
  pspTimeoutAfter?: number;
}

export interface ThrottleOptions {
  /** Bytes per second the PSP moves through memory (a few MB/s is realistic). */
  bytesPerSecond?: number;
  /**
   * Commands per second the PSP completes, whatever they move (the fixed cost of a command; AMD measured
   * 350-450 SEND_UPDATE_DATA pages per second in 2020). Without it a command costs 0.05 ms.
   */
  commandsPerSecond?: number;
}

/** The outcome of one firmware command as the kernel sees it. */
export interface FwCall<T> {
  /** 0, or a positive errno (EIO for a firmware status, ETIMEDOUT, EBUSY once dead). */
  readonly errno: number;
  /** What goes into `error`; undefined when the driver does not touch it. */
  readonly status: number | undefined;
  readonly out: T | undefined;
}

/** Fixed PSP cost of a command when throttled. */
const COMMAND_MS = 0.05;

export class SevDriver {
  readonly firmware: SevFirmware;
  /** The driver's own view (sev->state): it only ever tracks UNINIT (0) and INIT (1). */
  state = 0;
  private dead = false;
  private issued = 0;
  private readonly faults: FaultOptions;
  private readonly throttle: ThrottleOptions | undefined;
  private readonly sevMax: number;
  /** Called for each firmware command (the host's trace). */
  onCommand: ((command: string, status: number) => void) | undefined;
  /** PSP time spent since the host last collected it (throttle). */
  costMs = 0;

  constructor(firmware: SevFirmware, opts: { faults?: FaultOptions; throttle?: ThrottleOptions; sevMax: number }) {
    this.firmware = firmware;
    this.faults = opts.faults ?? {};
    this.throttle = opts.throttle;
    this.sevMax = opts.sevMax;
  }

  /** True once a time-out killed the PSP. */
  get pspDead(): boolean {
    return this.dead;
  }

  /** __sev_do_cmd_locked: issue one firmware command. */
  do<T extends FwResult>(command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): FwCall<T> {
    if (this.dead) return { errno: E.EBUSY, status: undefined, out: undefined };
    const n = ++this.issued;
    const th = this.throttle;
    if (th)
      this.costMs +=
        (th.commandsPerSecond ? 1000 / th.commandsPerSecond : COMMAND_MS) + (th.bytesPerSecond ? (bytes / th.bytesPerSecond) * 1000 : 0);
    const t = this.faults.pspTimeoutAfter;
    if (t !== undefined && n > t) {
      this.dead = true;
      this.onCommand?.(command, -1);
      return { errno: E.ETIMEDOUT, status: 0, out: undefined };
    }
    const f = this.faults.failCommand;
    if (f && f.nth === n) {
      this.onCommand?.(command, f.status);
      return { errno: f.status === 0 ? 0 : E.EIO, status: f.status, out: undefined };
    }
    const out = call(this.firmware);
    this.onCommand?.(command, out.status);
    return { errno: out.status === 0 ? 0 : E.EIO, status: out.status, out };
  }

  /** __sev_platform_init_locked: INIT (with the ES flag when the CPU has SEV-ES), then DF_FLUSH. */
  platformInit(): FwCall<FwResult> {
    if (this.state === 1) return { errno: 0, status: undefined, out: undefined };
    const es = this.firmware.profile.sevEs;
    const r = this.do('INIT', (fw) => fw.init({ es }));
    if (r.errno) return r;
    this.state = 1;
    this.firmware.wbinvd?.(); // wbinvd_on_all_cpus() before the DF_FLUSH
    return this.do('DF_FLUSH', (fw) => fw.dfFlush());
  }

  /** __sev_platform_shutdown_locked */
  platformShutdown(): FwCall<FwResult> {
    if (this.state === 0) return { errno: 0, status: undefined, out: undefined };
    const r = this.do('SHUTDOWN', (fw) => fw.shutdown());
    if (!r.errno) this.state = 0;
    return r;
  }

  /** DF_FLUSH for ASID recycling (sev_guest_df_flush); false on failure. */
  dfFlush(): boolean {
    this.firmware.wbinvd?.();
    return this.do('DF_FLUSH', (fw) => fw.dfFlush()).errno === 0;
  }

  /**
   * SEV_ISSUE_CMD on a /dev/sev fd (`argAddr` is the user address of the struct sev_issue_cmd).
   * Returns 0 or throws a KernelErrno. The struct is copied back (for `error`) after every known command.
   */
  ioctl(mem: UserMemory, writable: boolean, argAddr: bigint): number {
    const raw = mem.copyFromUser(argAddr, sev_issue_cmd.size);
    const input = sev_issue_cmd.decode(raw);
    if (input.cmd >= this.sevMax) fail(E.EINVAL, `cmd ${input.cmd} >= SEV_MAX`);
    const io = { cmd: input.cmd, data: input.data, error: input.error };
    let errno = 0;
    try {
      errno = this.command(mem, writable, io);
    } catch (e) {
      errno = (e as { errno?: number }).errno ?? E.EFAULT;
      if (typeof (e as { errno?: unknown }).errno !== 'number') throw e;
    }
    const out = sev_issue_cmd.encode({ cmd: io.cmd, data: io.data, error: io.error >>> 0 });
    mem.copyToUser(argAddr, out);
    if (errno) fail(errno);
    return 0;
  }

  /** The command switch; returns 0 or a positive errno (io.error holds the status). */
  private command(mem: UserMemory, writable: boolean, io: { cmd: number; data: bigint; error: number }): number {
    const st = (r: FwCall<unknown>): number => {
      if (r.status !== undefined) io.error = r.status;
      return r.errno;
    };
    switch (io.cmd) {
      case SEV_CMD.FACTORY_RESET: {
        if (!writable) return E.EPERM;
        const s = this.do('PLATFORM_STATUS', (fw) => fw.platformStatus());
        if (st(s)) return s.errno;
        if (s.out!.state === 2) return E.EBUSY;
        if (s.out!.state === 1) {
          const r = this.do('SHUTDOWN', (fw) => fw.shutdown());
          if (st(r)) return r.errno;
          this.state = 0;
        }
        return st(this.do('FACTORY_RESET', (fw) => fw.factoryReset()));
      }
      case SEV_CMD.PLATFORM_STATUS: {
        const r = this.do('PLATFORM_STATUS', (fw) => fw.platformStatus());
        if (st(r)) return r.errno;
        const o = r.out!;
        mem.copyToUser(
          io.data,
          sev_user_data_status.encode({
            api_major: o.apiMajor,
            api_minor: o.apiMinor,
            state: o.state,
            flags: ((o.owner & 1) | ((o.config & 1) << 8)) >>> 0,
            build: o.build,
            guest_count: o.guestCount,
          }),
        );
        return 0;
      }
      case SEV_CMD.PEK_GEN:
      case SEV_CMD.PDH_GEN: {
        if (!writable) return E.EPERM;
        return this.withInit(io, () =>
          st(io.cmd === SEV_CMD.PEK_GEN ? this.do('PEK_GEN', (fw) => fw.pekGen()) : this.do('PDH_GEN', (fw) => fw.pdhGen())),
        );
      }
      case SEV_CMD.PEK_CSR: {
        if (!writable) return E.EPERM;
        const p = sev_user_data_pek_csr.decode(mem.copyFromUser(io.data, sev_user_data_pek_csr.size));
        const query = p.address === 0n || p.length === 0;
        if (!query && p.length > SEV_FW_BLOB_MAX_SIZE) return E.EFAULT;
        return this.withInit(io, () => {
          const r = this.do('PEK_CSR', (fw) => fw.pekCsr(query ? 0 : p.length));
          let ret = st(r);
          const length = r.out?.length ?? 0;
          mem.copyToUser(io.data, sev_user_data_pek_csr.encode({ address: p.address, length }));
          if (!query) {
            const blob = new Uint8Array(p.length);
            if (r.out?.data) blob.set(r.out.data.subarray(0, p.length));
            try {
              mem.copyToUser(p.address, blob.subarray(0, Math.min(length, p.length)));
            } catch {
              ret = E.EFAULT;
            }
          }
          return ret;
        });
      }
      case SEV_CMD.PEK_CERT_IMPORT: {
        if (!writable) return E.EPERM;
        const p = sev_user_data_pek_cert_import.decode(mem.copyFromUser(io.data, sev_user_data_pek_cert_import.size));
        const pek = copyUserBlob(mem, p.pek_cert_address, p.pek_cert_len);
        const oca = copyUserBlob(mem, p.oca_cert_address, p.oca_cert_len);
        return this.withInit(io, () => st(this.do('PEK_CERT_IMPORT', (fw) => fw.pekCertImport(pek, oca))));
      }
      case SEV_CMD.PDH_CERT_EXPORT: {
        const p = sev_user_data_pdh_cert_export.decode(mem.copyFromUser(io.data, sev_user_data_pdh_cert_export.size));
        const query = !p.pdh_cert_address || !p.pdh_cert_len || !p.cert_chain_address || !p.cert_chain_len;
        if (!query && (p.pdh_cert_len > SEV_FW_BLOB_MAX_SIZE || p.cert_chain_len > SEV_FW_BLOB_MAX_SIZE)) return E.EFAULT;
        if (this.state !== 1 && !writable) return E.EPERM;
        return this.withInit(io, () => {
          const r = this.do('PDH_CERT_EXPORT', (fw) => fw.pdhCertExport(query ? 0 : p.pdh_cert_len, query ? 0 : p.cert_chain_len));
          let ret = st(r);
          const pdhLen = r.out?.pdhLength ?? 0;
          const certsLen = r.out?.certsLength ?? 0;
          mem.copyToUser(
            io.data,
            sev_user_data_pdh_cert_export.encode({
              pdh_cert_address: p.pdh_cert_address,
              pdh_cert_len: pdhLen,
              cert_chain_address: p.cert_chain_address,
              cert_chain_len: certsLen,
            }),
          );
          if (!query) {
            try {
              mem.copyToUser(p.pdh_cert_address, padTo(r.out?.pdh, Math.min(pdhLen, p.pdh_cert_len)));
              mem.copyToUser(p.cert_chain_address, padTo(r.out?.certs, Math.min(certsLen, p.cert_chain_len)));
            } catch {
              ret = E.EFAULT;
            }
          }
          return ret;
        });
      }
      case SEV_CMD.GET_ID: {
        if (!this.apiAtLeast(0, 16)) return E.ENOTSUPP;
        const r = this.do('GET_ID', (fw) => fw.getId(128));
        if (st(r)) return r.errno;
        mem.copyToUser(io.data, padTo(r.out!.data, 128));
        return 0;
      }
      case SEV_CMD.GET_ID2: {
        if (!this.apiAtLeast(0, 16)) return E.ENOTSUPP;
        const p = sev_user_data_get_id2.decode(mem.copyFromUser(io.data, sev_user_data_get_id2.size));
        const withBuf = p.address !== 0n && p.length !== 0;
        if (withBuf && p.length > 4 << 20) return E.ENOMEM; // kzalloc beyond the page allocator's limit
        const r = this.do('GET_ID', (fw) => fw.getId(withBuf ? p.length : 0));
        let ret = st(r);
        const len = r.out?.length ?? 0;
        mem.copyToUser(io.data, sev_user_data_get_id2.encode({ address: p.address, length: len }));
        if (withBuf) {
          try {
            mem.copyToUser(p.address, padTo(r.out?.data, Math.min(len, p.length)));
          } catch {
            ret = E.EFAULT;
          }
        }
        return ret;
      }
      case SEV_CMD.SNP_PLATFORM_STATUS:
        return io.data === 0n ? E.EINVAL : E.ENODEV; // the mock firmware has no SNP
      case SEV_CMD.SNP_COMMIT:
        return E.ENODEV;
      case SEV_CMD.SNP_SET_CONFIG:
      case SEV_CMD.SNP_VLEK_LOAD: {
        if (io.data === 0n) return E.EINVAL;
        if (!writable) return E.EPERM;
        if (io.cmd === SEV_CMD.SNP_VLEK_LOAD) {
          const v = sev_user_data_snp_vlek_load.decode(mem.copyFromUser(io.data, sev_user_data_snp_vlek_load.size));
          void v;
        }
        return E.ENODEV;
      }
      default:
        return E.EINVAL;
    }
  }

  /**
   * Run `f` with the platform in INIT: if it is not, the driver initialises it (sev_move_to_init_state)
   * and, for a temporary init, shuts it down again afterwards.
   */
  private withInit(io: { error: number }, f: () => number): number {
    let temporary = false;
    if (this.state !== 1) {
      const r = this.platformInit();
      if (r.status !== undefined) io.error = r.status;
      if (r.errno) return r.errno;
      temporary = true;
    }
    const ret = f();
    if (temporary) this.platformShutdown();
    return ret;
  }

  private apiAtLeast(major: number, minor: number): boolean {
    const p = this.firmware.profile;
    return p.apiMajor > major || (p.apiMajor === major && p.apiMinor >= minor);
  }
}

/** psp_copy_user_blob: EINVAL for a zero address or length or more than 16 KiB, EFAULT if unreadable. */
export function copyUserBlob(mem: UserMemory, addr: bigint, len: number): Uint8Array {
  if (addr === 0n || len === 0) fail(E.EINVAL, 'blob address or length is 0');
  if (len > SEV_FW_BLOB_MAX_SIZE) fail(E.EINVAL, 'blob larger than 16 KiB');
  return mem.copyFromUser(addr, len);
}

/** `data` cut or zero-padded to `n` bytes (a kzalloc'd kernel buffer the firmware filled). */
export function padTo(data: Uint8Array | undefined, n: number): Uint8Array {
  const out = new Uint8Array(n);
  if (data) out.set(data.subarray(0, n));
  return out;
}

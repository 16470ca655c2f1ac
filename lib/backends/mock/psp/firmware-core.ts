/**
 * The mock firmware's state and the checks every command shares (docs/sev-reference.md §2, §9): platform
 * state (PSTATE), SEV-ES configuration, the key material, guest contexts, ASIDs. The command
 * handlers (platform-, guest-, launch-, migration-, debug-commands.ts) operate on a FirmwareCore;
 * MockFirmware (firmware.ts) is the public face.
 */
import { randomBytes } from 'node:crypto';
import { SevCertError, SevChainError } from '../../../crypto/index.js';
import { PSTATE } from '../../../uapi/constants.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, MemoryController, ProcessorProfile } from './api.js';
import { AsidTable } from './asid-table.js';
import type { GuestContext } from './guest-context.js';
import type { LaunchUpdateQueue } from './launch-batch.js';
import { GuestTable } from './guest-context.js';
import type { PlatformIdentity, RandomSource } from './platform-keys.js';

export interface CoreOptions {
  /** PDH regenerated at every INIT (the spec's wording) instead of kept (Genoa firmware). Default false. */
  regeneratePdhOnInit: boolean;
  /** Track WBINVD: DF_FLUSH after a DEACTIVATE answers WBINVD_REQUIRED until wbinvd(). Default false. */
  enforceWbinvd: boolean;
  /** MAC context byte of SEND/RECEIVE_UPDATE_VMSA packets: 0x02 as Genoa firmware, or 0x03 (§6). */
  vmsaTransportContext: number;
  /** Sockets reported by GET_ID (64 bytes each). */
  sockets: number;
}

export class FirmwareCore {
  readonly profile: ProcessorProfile;
  readonly memory: MemoryController;
  readonly identity: PlatformIdentity;
  readonly options: CoreOptions;
  readonly #random: RandomSource;
  pstate: number = PSTATE.UNINIT;
  /** INIT was given the SEV-ES flag (PLATFORM_STATUS config bit 0). */
  esInit = false;
  readonly guests = new GuestTable();
  readonly asids: AsidTable;
  /** Every core's WBINVD_DONE flag (only consulted with options.enforceWbinvd). */
  wbinvdDone = true;
  /** LAUNCH_UPDATE_DATA work queued during a batch (launch-batch.ts), or null: done at once. */
  launchQueue: LaunchUpdateQueue | null = null;

  constructor(init: {
    profile: ProcessorProfile;
    memory: MemoryController;
    identity: PlatformIdentity;
    random: RandomSource;
    options: CoreOptions;
  }) {
    this.profile = init.profile;
    this.memory = init.memory;
    this.identity = init.identity;
    this.#random = init.random;
    this.options = init.options;
    this.asids = new AsidTable(init.profile.maxSevAsid);
  }

  /** `n` bytes from the random source, as a Buffer we own. */
  random(n: number): Buffer {
    const r = this.#random(n);
    if (!(r instanceof Uint8Array) || r.length !== n) throw new TypeError(`the random source returned ${r?.length} bytes, expected ${n}`);
    return Buffer.from(r);
  }

  /** The guest of `handle`, or undefined (INVALID_GUEST). */
  guest(handle: number): GuestContext | undefined {
    return this.guests.get(handle);
  }

  /** Writes shared (plaintext) bytes through the controller if it tracks them. */
  writeShared(range: { paddr: bigint; bytes: Uint8Array }, data: Uint8Array): void {
    if (this.memory.writeShared) this.memory.writeShared(range, data);
    else range.bytes.set(data);
  }
}

export const OK: FwResult = Object.freeze({ status: SEV_RET.SUCCESS });

export function fail(status: number): FwResult {
  return { status };
}

/** Firmware status of a certificate or chain failure (§7.1: BAD_SIGNATURE or INVALID_CERTIFICATE). */
export function certStatus(e: SevCertError | SevChainError): number {
  return e.firmwareStatus === 'BAD_SIGNATURE' ? SEV_RET.BAD_SIGNATURE : SEV_RET.INVALID_CERTIFICATE;
}

export function isCertError(e: unknown): e is SevCertError | SevChainError {
  return e instanceof SevCertError || e instanceof SevChainError;
}

export { randomBytes as defaultRandom };

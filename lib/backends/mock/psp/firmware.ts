/**
 * MockFirmware: the AMD Secure Processor's SEV firmware (legacy SEV and SEV-ES) as the mock kernel
 * drives it (api.ts `SevFirmware`). Every command follows docs/sev-reference.md (bare § below): the
 * state machines of §2, the checks and status codes of §3–§9 in the order AMD-ASPFW's handlers use
 * (the AMD SEV API spec, pub. 55766, defines the commands). Firmware-level failures are returned as statuses, never thrown; a caller
 * that breaks the contract (wrong types, mismatched buffers) gets a Node-style argument error.
 */
import { randomBytes } from 'node:crypto';
import { serializeAmdCert, serializeSevCert } from '../../../crypto/index.js';
import { GSTATE } from '../../../uapi/constants.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../../../uapi/errors.js';
import type {
  FwResult,
  GuestStatusOut,
  MemoryController,
  PhysRange,
  PlatformStatusOut,
  ProcessorProfile,
  SevFirmware,
  SizedOut,
} from './api.js';
import { mockAmdRoot, mockAmdRootAsync, rootBitsFor } from './mock-amd-root.js';
import type { MockAmdRoot } from './mock-amd-root.js';
import { debugCrypt } from './debug-commands.js';
import { FirmwareCore } from './firmware-core.js';
import { activate, deactivate, decommission, guestStatus } from './guest-management-commands.js';
import { LaunchUpdateQueue } from './launch-batch.js';
import { attestation, launchFinish, launchMeasure, launchSecret, launchUpdate, startGuest } from './launch-commands.js';
import { receiveFinish, receiveStart, receiveUpdate, sendEnd, sendStart, sendUpdate } from './migration-commands.js';
import type { SendStartOut, SendUpdateOut } from './migration-commands.js';
import * as platform from './platform-commands.js';
import type { PdhCertExportOut } from './platform-commands.js';
import { PlatformIdentity } from './platform-keys.js';
import type { RandomSource } from './platform-keys.js';

export interface MockFirmwareOptions {
  profile: ProcessorProfile;
  memory: MemoryController;
  /** The AMD root the chip's CEK chains to. Default: the process's mock root of the generation's size. */
  root?: MockAmdRoot;
  /** The chip-unique key (CEK, GET_ID): deterministic chips for tests. Default: 32 random bytes. */
  chipKey?: Uint8Array;
  /** Random source for VEKs, MNONCEs, keys, session values, IVs. Default crypto.randomBytes. */
  random?: RandomSource;
  /** Regenerate the PDH at every INIT (the spec's wording) instead of keeping it (Genoa firmware). Default false. */
  regeneratePdhOnInit?: boolean;
  /** Answer DF_FLUSH with WBINVD_REQUIRED after a DEACTIVATE until {@link MockFirmware.wbinvd}. Default false. */
  enforceWbinvd?: boolean;
  /** MAC context byte of SEND/RECEIVE_UPDATE_VMSA: 0x02 (Genoa firmware, default) or 0x03 (§6). */
  vmsaTransportContext?: 0x02 | 0x03;
  /** Sockets GET_ID reports (64 bytes each). Default 1. */
  sockets?: number;
}

function u32(value: unknown, name: string): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'number', value);
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw outOfRange(name, '>= 0 && <= 4294967295', value);
  return value;
}

function bytes(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgType(name, 'an instance of Uint8Array', value);
  return value;
}

export class MockFirmware implements SevFirmware {
  readonly profile: ProcessorProfile;
  readonly memory: MemoryController;
  readonly #state: FirmwareCore;

  /** The core, with queued LAUNCH_UPDATE_DATA work done first: every command but that one goes through here. */
  get #core(): FirmwareCore {
    this.#state.launchQueue?.flush();
    return this.#state;
  }

  /** Like the constructor, but a missing root is generated without blocking the event loop. */
  static async create(opts: MockFirmwareOptions): Promise<MockFirmware> {
    const root = opts.root ?? (await mockAmdRootAsync(rootBitsFor(opts.profile)));
    return new MockFirmware({ ...opts, root });
  }

  constructor(opts: MockFirmwareOptions) {
    if (typeof opts !== 'object' || opts === null) throw invalidArgType('options', 'object', opts);
    const { profile, memory } = opts;
    if (typeof profile !== 'object' || profile === null) throw invalidArgType('options.profile', 'a ProcessorProfile', profile);
    if (profile.minSevAsid < 1 || profile.minSevAsid > profile.maxSevAsid + 1)
      throw invalidArgValue('options.profile.minSevAsid', profile.minSevAsid, 'must be in 1..maxSevAsid+1');
    if (typeof memory?.writePrivate !== 'function' || typeof memory.readPrivate !== 'function') {
      throw invalidArgType('options.memory', 'a MemoryController', memory);
    }
    const random: RandomSource = opts.random ?? randomBytes;
    if (typeof random !== 'function') throw invalidArgType('options.random', 'function', random);
    const sockets = opts.sockets ?? 1;
    if (!Number.isInteger(sockets) || sockets < 1 || sockets > 2) throw outOfRange('options.sockets', '1 or 2', sockets);
    const ctx = opts.vmsaTransportContext ?? 0x02;
    if (ctx !== 0x02 && ctx !== 0x03) throw invalidArgValue('options.vmsaTransportContext', ctx, 'must be 0x02 or 0x03');
    this.profile = profile;
    this.memory = memory;
    const root = opts.root ?? mockAmdRoot(rootBitsFor(profile));
    const chipKey = opts.chipKey === undefined ? Buffer.from(random(32)) : bytes(opts.chipKey, 'options.chipKey');
    const identity = new PlatformIdentity({ root, chipKey, apiMajor: profile.apiMajor, apiMinor: profile.apiMinor, random });
    this.#state = new FirmwareCore({
      profile,
      memory,
      identity,
      random,
      options: {
        regeneratePdhOnInit: opts.regeneratePdhOnInit ?? false,
        enforceWbinvd: opts.enforceWbinvd ?? false,
        vmsaTransportContext: ctx,
        sockets,
      },
    });
  }

  // ---- extras (not in SevFirmware) ----

  /** The AMD root (ARK, ASK) this chip's CEK chains to. */
  get root(): MockAmdRoot {
    return this.#core.identity.root;
  }

  /** ASK ‖ ARK in AMD's format, as SEND_START's `amdCerts` and `sevctl export --full` carry them. */
  amdCerts(): Buffer {
    return Buffer.concat([serializeAmdCert(this.root.ask), serializeAmdCert(this.root.ark)]);
  }

  /** The ASK-signed CEK, as AMD's KDS serves it (needed where PDH_CERT_EXPORT's CEK is unsigned, e.g. Genoa). */
  kdsCek(): Buffer {
    return serializeSevCert(this.#core.identity.cek);
  }

  // ---- platform ----

  init(opts: { es: boolean }): FwResult {
    return platform.init(this.#core, opts?.es === true);
  }
  shutdown(): FwResult {
    return platform.shutdown(this.#core);
  }
  factoryReset(): FwResult {
    return platform.factoryReset(this.#core);
  }
  platformStatus(): PlatformStatusOut {
    return platform.platformStatus(this.#core);
  }
  pekGen(): FwResult {
    return platform.pekGen(this.#core);
  }
  pekCsr(capacity: number): SizedOut {
    return platform.pekCsr(this.#core, u32(capacity, 'capacity'));
  }
  pekCertImport(pek: Uint8Array, oca: Uint8Array): FwResult {
    return platform.pekCertImport(this.#core, bytes(pek, 'pek'), bytes(oca, 'oca'));
  }
  pdhCertExport(pdhCapacity: number, certsCapacity: number): PdhCertExportOut {
    return platform.pdhCertExport(this.#core, u32(pdhCapacity, 'pdhCapacity'), u32(certsCapacity, 'certsCapacity'));
  }
  pdhGen(): FwResult {
    return platform.pdhGen(this.#core);
  }
  dfFlush(): FwResult {
    return platform.dfFlush(this.#core);
  }
  getId(capacity: number): SizedOut {
    return platform.getId(this.#core, u32(capacity, 'capacity'));
  }
  /** The host ran WBINVD on every CPU (matters only with `enforceWbinvd`). */
  wbinvd(): void {
    this.#core.wbinvdDone = true;
  }

  // ---- guest management ----

  decommission(handle: number): FwResult {
    return decommission(this.#core, u32(handle, 'handle'));
  }
  activate(handle: number, asid: number): FwResult {
    return activate(this.#core, u32(handle, 'handle'), u32(asid, 'asid'));
  }
  deactivate(handle: number): FwResult {
    return deactivate(this.#core, u32(handle, 'handle'));
  }
  guestStatus(handle: number): GuestStatusOut {
    return guestStatus(this.#core, u32(handle, 'handle'));
  }

  // ---- launch ----

  launchStart(args: {
    handle: number;
    policy: number;
    dhCert: Uint8Array | null;
    session: Uint8Array | null;
  }): FwResult & { handle: number } {
    const dhCert = args.dhCert === null ? null : bytes(args.dhCert, 'args.dhCert');
    const session = args.session === null ? null : bytes(args.session, 'args.session');
    return startGuest(this.#core, {
      handle: u32(args.handle, 'args.handle'),
      policy: u32(args.policy, 'args.policy'),
      dhCert,
      session,
      state: GSTATE.LUPDATE,
    });
  }
  /** Queues the memory work of the LAUNCH_UPDATE_DATA commands `commands` issues (launch-batch.ts). */
  batch<T>(commands: () => T): T {
    if (typeof commands !== 'function') throw invalidArgType('commands', 'function', commands);
    const s = this.#state;
    if (s.launchQueue) return commands(); // nested: the outer batch flushes
    const queue = new LaunchUpdateQueue(s.memory);
    s.launchQueue = queue;
    try {
      return commands();
    } finally {
      s.launchQueue = null;
      queue.flush();
    }
  }
  launchUpdateData(handle: number, range: PhysRange): FwResult {
    return launchUpdate(this.#state, u32(handle, 'handle'), range, false);
  }
  launchUpdateVmsa(handle: number, range: PhysRange): FwResult {
    return launchUpdate(this.#core, u32(handle, 'handle'), range, true);
  }
  launchMeasure(handle: number, capacity: number): SizedOut {
    return launchMeasure(this.#core, u32(handle, 'handle'), u32(capacity, 'capacity'));
  }
  launchSecret(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult {
    return launchSecret(this.#core, u32(handle, 'handle'), {
      header: bytes(args.header, 'args.header'),
      guest: args.guest,
      trans: bytes(args.trans, 'args.trans'),
    });
  }
  launchFinish(handle: number): FwResult {
    return launchFinish(this.#core, u32(handle, 'handle'));
  }
  attestation(handle: number, mnonce: Uint8Array, capacity: number): SizedOut {
    return attestation(this.#core, u32(handle, 'handle'), bytes(mnonce, 'mnonce'), u32(capacity, 'capacity'));
  }

  // ---- migration ----

  sendStart(
    handle: number,
    args: { pdhCert: Uint8Array; platCerts: Uint8Array; amdCerts: Uint8Array; sessionCapacity: number },
  ): SendStartOut {
    return sendStart(this.#core, u32(handle, 'handle'), {
      pdhCert: bytes(args.pdhCert, 'args.pdhCert'),
      platCerts: bytes(args.platCerts, 'args.platCerts'),
      amdCerts: bytes(args.amdCerts, 'args.amdCerts'),
      sessionCapacity: u32(args.sessionCapacity, 'args.sessionCapacity'),
    });
  }
  sendUpdateData(handle: number, args: { guest: PhysRange; hdrCapacity: number; transCapacity: number }): SendUpdateOut {
    return sendUpdate(this.#core, u32(handle, 'handle'), this.#sendArgs(args), false);
  }
  sendUpdateVmsa(handle: number, args: { guest: PhysRange; hdrCapacity: number; transCapacity: number }): SendUpdateOut {
    return sendUpdate(this.#core, u32(handle, 'handle'), this.#sendArgs(args), true);
  }
  #sendArgs(args: { guest: PhysRange; hdrCapacity: number; transCapacity: number }) {
    return {
      guest: args.guest,
      hdrCapacity: u32(args.hdrCapacity, 'args.hdrCapacity'),
      transCapacity: u32(args.transCapacity, 'args.transCapacity'),
    };
  }
  sendFinish(handle: number): FwResult {
    return sendEnd(this.#core, u32(handle, 'handle'), GSTATE.SENT);
  }
  sendCancel(handle: number): FwResult {
    return sendEnd(this.#core, u32(handle, 'handle'), GSTATE.RUNNING);
  }
  receiveStart(args: { handle: number; policy: number; pdhCert: Uint8Array; session: Uint8Array }): FwResult & { handle: number } {
    return receiveStart(this.#core, {
      handle: u32(args.handle, 'args.handle'),
      policy: u32(args.policy, 'args.policy'),
      pdhCert: bytes(args.pdhCert, 'args.pdhCert'),
      session: bytes(args.session, 'args.session'),
    });
  }
  receiveUpdateData(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult {
    return receiveUpdate(this.#core, u32(handle, 'handle'), this.#recvArgs(args), false);
  }
  receiveUpdateVmsa(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult {
    return receiveUpdate(this.#core, u32(handle, 'handle'), this.#recvArgs(args), true);
  }
  #recvArgs(args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }) {
    return { header: bytes(args.header, 'args.header'), guest: args.guest, trans: bytes(args.trans, 'args.trans') };
  }
  receiveFinish(handle: number): FwResult {
    return receiveFinish(this.#core, u32(handle, 'handle'));
  }

  // ---- debug ----

  dbgDecrypt(handle: number, src: PhysRange, dst: PhysRange): FwResult {
    return debugCrypt(this.#core, u32(handle, 'handle'), src, dst, false);
  }
  dbgEncrypt(handle: number, src: PhysRange, dst: PhysRange): FwResult {
    return debugCrypt(this.#core, u32(handle, 'handle'), src, dst, true);
  }
}

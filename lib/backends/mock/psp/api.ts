/**
 * The contract between the mock kernel (lib/backends/mock/kernel/svm, kernel/ccp) and the mock AMD Secure
 * Processor firmware (lib/backends/mock/psp). It sits where the real kernel's `sev_do_cmd()` sits: one method
 * per firmware command (SEV API command ids in `SEV_FW_CMD`), buffers as typed objects, and the
 * firmware status (SEV_RET_*) in every result. The firmware never throws for a firmware-level failure;
 * it returns the status the real firmware would.
 *
 * Memory: the kernel pins user pages and hands the firmware "physical" ranges. A {@link PhysRange}
 * is a live view of those bytes plus the address the memory controller uses as its tweak. Private
 * (encrypted) guest memory is read and written only through the {@link MemoryController}, so that the
 * pure mock (memory holds ciphertext) and the hybrid (memory stays plaintext for the real CPU, and
 * the host's read path shows ciphertext) share one firmware.
 */

/** A pinned, physically contiguous range of memory, as the firmware sees it. */
export interface PhysRange {
  /** The address the memory encryption tweak uses: the system-physical address of the first byte (the
   * mock's 4 KiB frames, kernel/common/phys-memory.ts); for a foreign (native) mapping, whose frames the
   * mock cannot see, the guest-physical address when the range lies in a memory slot. */
  readonly paddr: bigint;
  /** A live view of the bytes (writes land in the user's memory, as DMA by the PSP would). */
  readonly bytes: Uint8Array;
}

/** The AMD memory controller: per-key, address-tweaked encryption of private pages. */
export interface MemoryController {
  /** Store `plaintext` as private memory of `vek` at `range` (same length). */
  writePrivate(range: PhysRange, vek: Uint8Array, plaintext: Uint8Array): void;
  /**
   * `writePrivate(r, vek, r.bytes)` for every range, in place (the same bytes as one call each).
   * Optional: without it the firmware makes the calls one by one.
   */
  writePrivateMany?(ranges: readonly PhysRange[], vek: Uint8Array): void;
  /** What a guest holding `vek` reads at `range` (plaintext). */
  readPrivate(range: PhysRange, vek: Uint8Array): Uint8Array;
  /** True if the pure mock stores ciphertext (false: the hybrid keeps plaintext for the real CPU). */
  readonly storesCiphertext: boolean;
  /**
   * Store `data` as shared (unencrypted) memory at `range`, e.g. DBG_DECRYPT's plaintext output.
   * Optional: without it the firmware writes `range.bytes` directly.
   */
  writeShared?(range: PhysRange, data: Uint8Array): void;
}

/** A processor / firmware generation. */
export interface ProcessorProfile {
  readonly name: 'naples' | 'rome' | 'milan' | 'genoa';
  readonly apiMajor: number;
  readonly apiMinor: number;
  readonly build: number;
  /** CPUID 0x8000001F ECX: number of ASIDs (max_sev_asid). */
  readonly maxSevAsid: number;
  /** CPUID 0x8000001F EDX: ASIDs below this are SEV-ES only (1 = no SEV-ES). */
  readonly minSevAsid: number;
  /** CPUID 0x8000001F EBX[5:0]. */
  readonly cbitPosition: number;
  readonly sevEs: boolean;
  /** SEV-SNP (Zen 3 / Milan and later). Default false. */
  readonly sevSnp?: boolean;
  /** PDH_CERT_EXPORT returns an unsigned CEK placeholder (Genoa; docs/sev-reference.md §7.3). Default false. */
  readonly exportsUnsignedCek?: boolean;
}

/** SEV_RET_* */
export type FwStatus = number;

export interface FwResult {
  readonly status: FwStatus;
}

export interface PlatformStatusOut extends FwResult {
  apiMajor: number;
  apiMinor: number;
  /** PSTATE: 0 UNINIT, 1 INIT, 2 WORKING */
  state: number;
  /** bit 0: externally owned */
  owner: number;
  /** bit 0: initialised with SEV-ES */
  config: number;
  build: number;
  guestCount: number;
}

/** Commands that report a required length (INVALID_LEN with `length` written back). */
export interface SizedOut extends FwResult {
  length: number;
  data?: Uint8Array;
}

export interface GuestStatusOut extends FwResult {
  policy: number;
  asid: number;
  /** GSTATE */
  state: number;
}

/** The firmware, as the mock kernel drives it. Every method is synchronous and cheap to call. */
export interface SevFirmware {
  readonly profile: ProcessorProfile;

  // ---- platform (SEV API chapter 5) ----
  /** INIT (0x01); `es` sets the SEV-ES flag in the INIT buffer. */
  init(opts: { es: boolean }): FwResult;
  /** SHUTDOWN (0x02) */
  shutdown(): FwResult;
  /** PLATFORM_RESET / FACTORY_RESET (0x03) */
  factoryReset(): FwResult;
  /** PLATFORM_STATUS (0x04) */
  platformStatus(): PlatformStatusOut;
  /** PEK_GEN (0x05) */
  pekGen(): FwResult;
  /** PEK_CSR (0x06): `capacity` < 0x824 (0 = query) → INVALID_LEN with length. */
  pekCsr(capacity: number): SizedOut;
  /** PEK_CERT_IMPORT (0x07) */
  pekCertImport(pek: Uint8Array, oca: Uint8Array): FwResult;
  /** PDH_CERT_EXPORT (0x08): the PDH, and PEK ‖ OCA ‖ CEK. */
  pdhCertExport(
    pdhCapacity: number,
    certsCapacity: number,
  ): FwResult & { pdhLength: number; certsLength: number; pdh?: Uint8Array; certs?: Uint8Array };
  /** PDH_GEN (0x09) */
  pdhGen(): FwResult;
  /** DF_FLUSH (0x0A): dirty ASIDs become usable again. */
  dfFlush(): FwResult;
  /** GET_ID (0x0C): 64 bytes per socket. */
  getId(capacity: number): SizedOut;

  // ---- guest management ----
  /** DECOMMISSION (0x20) */
  decommission(handle: number): FwResult;
  /** ACTIVATE (0x21) */
  activate(handle: number, asid: number): FwResult;
  /** DEACTIVATE (0x22) */
  deactivate(handle: number): FwResult;
  /** GUEST_STATUS (0x23) */
  guestStatus(handle: number): GuestStatusOut;

  // ---- launch ----
  /** LAUNCH_START (0x30): `dhCert` null = no session (zero TEK/TIK). Returns the new handle. */
  launchStart(args: {
    handle: number;
    policy: number;
    dhCert: Uint8Array | null;
    session: Uint8Array | null;
  }): FwResult & { handle: number };
  /**
   * Runs `commands`, a loop of the kernel that issues several firmware commands (sev_launch_update_data()'s
   * command per contiguous run), and returns what it returns. The firmware may complete the memory side
   * of LAUNCH_UPDATE_DATA commands issued inside in bulk; all of it is done when `batch` returns or
   * throws, and before any other command runs. Optional: a kernel without it issues the loop directly.
   */
  batch?<T>(commands: () => T): T;
  /** LAUNCH_UPDATE_DATA (0x31): measures and encrypts `range` in place. */
  launchUpdateData(handle: number, range: PhysRange): FwResult;
  /** LAUNCH_UPDATE_VMSA (0x32): one 4096-byte VMSA page. */
  launchUpdateVmsa(handle: number, range: PhysRange): FwResult;
  /** LAUNCH_MEASURE (0x33): 48 bytes = HMAC ‖ MNONCE. */
  launchMeasure(handle: number, capacity: number): SizedOut;
  /** LAUNCH_UPDATE_SECRET (0x34) */
  launchSecret(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult;
  /** LAUNCH_FINISH (0x35) */
  launchFinish(handle: number): FwResult;
  /** ATTESTATION (0x36): the 0xD0-byte report. */
  attestation(handle: number, mnonce: Uint8Array, capacity: number): SizedOut;

  // ---- migration ----
  /** SEND_START (0x40): the receiver's PDH, its PEK ‖ OCA ‖ CEK, and ASK ‖ ARK. */
  sendStart(
    handle: number,
    args: { pdhCert: Uint8Array; platCerts: Uint8Array; amdCerts: Uint8Array; sessionCapacity: number },
  ): FwResult & { policy: number; sessionLength: number; session?: Uint8Array };
  /** SEND_UPDATE_DATA (0x41): one packet from `guest` (private memory). */
  sendUpdateData(
    handle: number,
    args: { guest: PhysRange; hdrCapacity: number; transCapacity: number },
  ): FwResult & { hdrLength: number; transLength: number; header?: Uint8Array; trans?: Uint8Array };
  /** SEND_FINISH (0x43) */
  sendFinish(handle: number): FwResult;
  /** SEND_CANCEL (0x44) */
  sendCancel(handle: number): FwResult;
  /** RECEIVE_START (0x50): `pdhCert` is the sender's PDH. Returns the new handle. */
  receiveStart(args: { handle: number; policy: number; pdhCert: Uint8Array; session: Uint8Array }): FwResult & { handle: number };
  /** RECEIVE_UPDATE_DATA (0x51) */
  receiveUpdateData(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult;
  /** RECEIVE_FINISH (0x53) */
  receiveFinish(handle: number): FwResult;
  /** SEND_UPDATE_VMSA (0x42): like SEND_UPDATE_DATA for an SEV-ES guest's VMSA page. Optional. */
  sendUpdateVmsa?(
    handle: number,
    args: { guest: PhysRange; hdrCapacity: number; transCapacity: number },
  ): FwResult & { hdrLength: number; transLength: number; header?: Uint8Array; trans?: Uint8Array };
  /** RECEIVE_UPDATE_VMSA (0x52). Optional. */
  receiveUpdateVmsa?(handle: number, args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array }): FwResult;
  /**
   * The host ran WBINVD on every CPU (the kernel does before DF_FLUSH). Optional: a firmware that
   * does not track it never answers WBINVD_REQUIRED.
   */
  wbinvd?(): void;

  // ---- debug ----
  /** DBG_DECRYPT (0x60): private `src` of the guest → plaintext into `dst`. */
  dbgDecrypt(handle: number, src: PhysRange, dst: PhysRange): FwResult;
  /** DBG_ENCRYPT (0x61): plaintext `src` → private `dst`. */
  dbgEncrypt(handle: number, src: PhysRange, dst: PhysRange): FwResult;
}

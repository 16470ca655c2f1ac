/** Guest owner: check LAUNCH_MEASURE's output (docs/sev-reference.md §4.3). */
import { bytesEqual, checkBytes, checkObject } from '../crypto/bytes.js';
import { SevMacError } from '../crypto/errors.js';
import { computeLaunchMeasurement, launchDigest, parseLaunchMeasureBlob } from '../crypto/measurement.js';
import { buildKernelHashesTable, type KernelHashesInput } from '../crypto/kernel-hashes.js';

export interface VerifyMeasurementOptions {
  /** LAUNCH_MEASURE's 48-byte output (MEASURE ‖ MNONCE), as QEMU's query-sev-launch-measure returns it (base64-decoded). */
  measurement: Uint8Array;
  /** The TIK of {@link createSession}. */
  tik: Uint8Array;
  /** The platform firmware's API version and build (query-sev / PLATFORM_STATUS). */
  apiMajor: number;
  apiMinor: number;
  build: number;
  policy: number;
  /** Expected launch digest: SHA-256 of everything measured (see launchDigest, buildKernelHashesTable). */
  digest: Uint8Array;
}

/** True iff MEASURE equals HMAC(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ digest ‖ MNONCE). Constant-time. */
export function verifyMeasurement(opts: VerifyMeasurementOptions): boolean {
  checkObject(opts, 'options');
  const { measure, mnonce } = parseLaunchMeasureBlob(checkBytes(opts.measurement, 'options.measurement', 48));
  const expected = computeLaunchMeasurement({
    apiMajor: opts.apiMajor,
    apiMinor: opts.apiMinor,
    build: opts.build,
    policy: opts.policy,
    digest: opts.digest,
    mnonce,
    tik: opts.tik,
  });
  return bytesEqual(measure, expected);
}

/** {@link verifyMeasurement} that throws SevMacError('measurement') instead of returning false. */
export function assertMeasurement(opts: VerifyMeasurementOptions): void {
  if (!verifyMeasurement(opts)) {
    throw new SevMacError('measurement', 'launch measurement does not match the expected digest, policy, firmware version or TIK');
  }
}

export interface ExpectedDigestOptions {
  /** The firmware image (OVMF) as loaded and measured (LAUNCH_UPDATE_DATA), or any launched image. */
  firmware: Uint8Array;
  /** Direct kernel boot with an OVMF that measures the kernel-hashes table. */
  kernelHashes?: KernelHashesInput;
  /** SEV-ES: each vCPU's 4096-byte VMSA page, in vCPU order (LAUNCH_UPDATE_VMSA). */
  vmsas?: readonly Uint8Array[];
}

/**
 * The launch digest QEMU's launch produces (docs/sev-reference.md §4.1): SHA-256 over the firmware image,
 * then the kernel-hashes table (zero-padded to 16 bytes), then the VMSAs, in that order.
 */
export function expectedLaunchDigest(opts: ExpectedDigestOptions): Buffer {
  checkObject(opts, 'options');
  const parts: Uint8Array[] = [checkBytes(opts.firmware, 'options.firmware')];
  if (opts.kernelHashes !== undefined) parts.push(buildKernelHashesTable(opts.kernelHashes)); // already 16-byte padded
  for (const [i, v] of (opts.vmsas ?? []).entries()) parts.push(checkBytes(v, `options.vmsas[${i}]`, 4096));
  return launchDigest(parts);
}

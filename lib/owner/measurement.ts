/** Guest owner: predict the launch digest and check LAUNCH_MEASURE's output (SEV API, LAUNCH_MEASURE). */
import { bytesEqual } from '../crypto/bytes.js';
import { checkBytes, checkObject } from '../uapi/args.js';
import { invalidArgValue, outOfRange, SevFormatError, SevMacError } from '../crypto/errors.js';
import { checkLaunchMeasurementShape, computeLaunchMeasurement, launchDigest, type LaunchMeasurement } from '../crypto/measurement.js';
import { buildKernelHashesTable, type KernelHashesInput } from '../crypto/kernel-hashes.js';
import { SEV_ES_RESET_BLOCK_GUID, SEV_HASH_TABLE_RV_GUID, sevEsResetAddress, sevHashesTableArea } from './ovmf.js';
import { BSP_RESET_EIP, qemuResetVmsa, toCpuSignature, VMSA_SIZE, type CpuInput } from './vmsa.js';

export interface VerifyMeasurementOptions {
  /** What the host's `launchMeasure()` returned (`measured.measurement`), as is. */
  measurement: LaunchMeasurement;
  /** The TIK of {@link createSession}. */
  tik: Uint8Array;
  /** The platform firmware's API version and build (query-sev / PLATFORM_STATUS). */
  apiMajor: number;
  apiMinor: number;
  build: number;
  policy: number;
  /** Expected launch digest: SHA-256 of everything measured (see expectedLaunchDigest). */
  digest: Uint8Array;
}

/** True iff MEASURE equals HMAC(TIK, 0x04 ‖ api ‖ build ‖ policy ‖ digest ‖ MNONCE). Constant-time. */
export function verifyMeasurement(opts: VerifyMeasurementOptions): boolean {
  checkObject('options', opts);
  const { measure, mnonce } = checkLaunchMeasurementShape(opts.measurement, 'options.measurement');
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

/** An SEV-ES launch as QEMU runs it: the VMSAs are built from the OVMF image and these. */
export interface SevEsLaunchInput {
  /** vCPUs (QEMU `-smp`): one VMSA each. */
  vcpus: number;
  /** The guest's CPU (QEMU `-cpu`): its CPUID signature, family/model/stepping, or a QEMU EPYC model name ('EPYC-Milan'). */
  cpu: CpuInput;
  /** 'init2' (default: QEMU 9.1+ on Linux 6.11+, which put the FPU state in the VMSA) or 'legacy' (KVM_SEV_ES_INIT). */
  init?: 'init2' | 'legacy';
  /** The VMSA features given to KVM_SEV_INIT2 (default 0). */
  sevFeatures?: bigint;
}

export interface ExpectedDigestOptions {
  /** The firmware image (OVMF) as loaded and measured (LAUNCH_UPDATE_DATA), or any launched image. */
  firmware: Uint8Array;
  /**
   * Direct kernel boot: the kernel, initrd and command line QEMU hashes into the table OVMF checks.
   * The firmware must reserve the table's area (its footer table names SEV_HASH_TABLE_RV_GUID).
   */
  kernelHashes?: KernelHashesInput;
  /** SEV-ES as QEMU launches it: the VMSAs are built here (see {@link SevEsLaunchInput}). */
  sevEs?: SevEsLaunchInput;
  /** SEV-ES with VMSA pages made elsewhere: each vCPU's 4096-byte page, in vCPU order. Not with `sevEs`. */
  vmsas?: readonly Uint8Array[];
}

/** Size of the kernel hashes table as QEMU measures it (zero-padded to 16 bytes). */
const PADDED_HASHES_TABLE = 176;

/**
 * The VMSA pages of a QEMU + OVMF SEV-ES launch, in vCPU order: the first vCPU at the reset vector,
 * the others at the OVMF's SEV-ES reset address (see lib/owner/vmsa.ts for every field).
 */
export function sevEsVmsas(firmware: Uint8Array, input: SevEsLaunchInput): Buffer[] {
  checkObject('sevEs', input);
  const vcpus = input.vcpus;
  if (!Number.isSafeInteger(vcpus) || vcpus < 1 || vcpus > 512) throw outOfRange('sevEs.vcpus', 'an integer from 1 to 512', vcpus);
  const cpuSignature = toCpuSignature(input.cpu, 'sevEs.cpu');
  const ap = sevEsResetAddress(checkBytes('firmware', firmware));
  if (ap === undefined) {
    throw new SevFormatError(
      `the firmware has no SEV-ES reset block (footer table GUID ${SEV_ES_RESET_BLOCK_GUID}): QEMU cannot start its vCPUs under SEV-ES, ` +
        'so there is no launch to predict. Use an OVMF built with SEV-ES support (OvmfPkg/AmdSev or OvmfPkgX64 of edk2).',
    );
  }
  const common = {
    cpuSignature,
    ...(input.init ? { init: input.init } : {}),
    ...(input.sevFeatures !== undefined ? { sevFeatures: input.sevFeatures } : {}),
  };
  const bsp = qemuResetVmsa({ eip: BSP_RESET_EIP, ...common });
  const aps = vcpus > 1 ? qemuResetVmsa({ eip: ap, ...common }) : undefined;
  return Array.from({ length: vcpus }, (_, i) => Buffer.from(i === 0 ? bsp : aps!));
}

/**
 * The launch digest QEMU's launch produces (SEV API, LAUNCH_UPDATE_DATA / LAUNCH_UPDATE_VMSA: the
 * digest runs over every measured byte, in order): SHA-256 over the firmware image, then the kernel
 * hashes table (zero-padded to 16 bytes), then, for SEV-ES, the VMSAs.
 */
export function expectedLaunchDigest(opts: ExpectedDigestOptions): Buffer {
  checkObject('options', opts);
  const firmware = checkBytes('options.firmware', opts.firmware);
  const parts: Uint8Array[] = [firmware];
  if (opts.kernelHashes !== undefined) {
    const area = sevHashesTableArea(firmware);
    if (area === undefined) {
      throw new SevFormatError(
        `a kernel (options.kernelHashes) cannot be measured with this firmware: it has no SEV hashes table (no footer table GUID ${SEV_HASH_TABLE_RV_GUID}), ` +
          'so QEMU refuses direct kernel boot under SEV (target/i386/sev.c: sev_add_kernel_loader_hashes()) and the firmware would not check the hashes. ' +
          'Use an OVMF built for measured direct boot (OvmfPkg/AmdSev of edk2), or boot the kernel from the measured disk instead',
      );
    }
    if (area.base === 0 || area.size < PADDED_HASHES_TABLE) {
      throw new SevFormatError(
        `a kernel (options.kernelHashes) cannot be measured with this firmware: its SEV hashes table area (base 0x${area.base.toString(16)}, ${area.size} bytes) cannot hold the ${PADDED_HASHES_TABLE}-byte table, which QEMU refuses`,
      );
    }
    parts.push(buildKernelHashesTable(opts.kernelHashes)); // already 16-byte padded
  }
  if (opts.sevEs !== undefined && opts.vmsas !== undefined)
    throw invalidArgValue('options', 'sevEs and vmsas', 'give one of sevEs and vmsas');
  if (opts.sevEs !== undefined) parts.push(...sevEsVmsas(firmware, opts.sevEs));
  for (const [i, v] of (opts.vmsas ?? []).entries()) parts.push(checkBytes(`options.vmsas[${i}]`, v, VMSA_SIZE));
  return launchDigest(parts);
}

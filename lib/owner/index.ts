/**
 * The guest owner's API (public entry `kvm-sev/owner`): verify a platform's certificate chain,
 * open a launch session, predict and check the launch measurement, and package a secret. What the
 * host's API returns goes into these functions as is, and back: `measured.measurement` (a
 * {@link LaunchMeasurement}) into verifyMeasurement and buildSecret, buildSecret's packet into
 * `measured.launchSecret`.
 *
 * @module kvm-sev/owner
 */
export { verifyChain, parseCertBundle, parsePlatformCerts } from './chain.js';
export type { OwnerChainInput, PlatformCertBundle } from './chain.js';
export { createSession } from './session.js';
export type { CreateSessionOptions, LaunchSession } from './session.js';
export { verifyMeasurement, assertMeasurement, expectedLaunchDigest, sevEsVmsas } from './measurement.js';
export type { ExpectedDigestOptions, SevEsLaunchInput } from './measurement.js';
/** The expected 32-byte launch measurement: HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ DIGEST ‖ MNONCE). */
export { computeLaunchMeasurement, parseLaunchMeasurement, serializeLaunchMeasurement } from '../crypto/measurement.js';
export type { MeasurementInput, LaunchMeasurement } from '../crypto/measurement.js';
export { qemuResetVmsa, cpuSignature, toCpuSignature, QEMU_EPYC_CPUS, BSP_RESET_EIP, VMSA_SIZE } from './vmsa.js';
export type { CpuIdentity, CpuInput, QemuVmsaOptions } from './vmsa.js';
export {
  ovmfFooterTable,
  sevEsResetAddress,
  sevHashesTableArea,
  SEV_ES_RESET_BLOCK_GUID,
  SEV_HASH_TABLE_RV_GUID,
  OVMF_TABLE_FOOTER_GUID,
} from './ovmf.js';
export type { VerifyMeasurementOptions } from './measurement.js';
export type { KernelHashesInput } from '../crypto/kernel-hashes.js';
export { buildSecret } from './secret.js';
export type { OwnerSecretOptions, OwnerSecret } from './secret.js';

// What owners need alongside: digests, secret tables, policy, certificate codecs, errors.
export { LaunchDigest, launchDigest } from '../crypto/measurement.js';
export { buildKernelHashesTable } from '../crypto/kernel-hashes.js';
export { buildSecretTable, parseSecretTable, SECRET_TABLE_GUID, LUKS_KEY_GUID } from '../crypto/secret-table.js';
export type { SecretTableEntry } from '../crypto/secret-table.js';
export { encodePolicy, decodePolicy, SevPolicyBit } from '../crypto/policy.js';
export type { SevPolicyFields } from '../crypto/policy.js';
export { parseSevCert, serializeSevCert } from '../crypto/sev-cert.js';
export type { SevCertificate } from '../crypto/sev-cert.js';
export { parseAmdCert, serializeAmdCert } from '../crypto/amd-cert.js';
export type { AmdCertificate } from '../crypto/amd-cert.js';
export { AMD_GENERATIONS } from '../crypto/amd-root-certs.js';
export type { AmdGeneration } from '../crypto/amd-root-certs.js';
export { builtinRoots, identifyGeneration } from '../crypto/builtin-amd-roots.js';
export type { VerifiedChain } from '../crypto/chain.js';
export { verifyAttestationReport, parseAttestationReport } from '../crypto/attestation.js';
export { SevCryptoError, SevChainError, SevCertError, SevMacError, SevFormatError } from '../crypto/errors.js';
export type { ChainLink, CertFailureReason, MacKind } from '../crypto/errors.js';

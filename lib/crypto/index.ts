/**
 * SEV cryptography and formats (legacy SEV / SEV-ES), shared by the mock firmware and the guest
 * owner. Section numbers (§) in comments refer to docs/sev-reference.md, which names the public
 * source of each fact (the AMD SEV API spec, pub. 55766; AMD's sev-tool; virtee/sev).
 */
export * from './errors.js';
export { bytesEqual } from './bytes.js';
export * from './cert-codes.js';
export * from './ecc.js';
export * from './rsa.js';
export * from './kdf.js';
export * from './aes-ctr.js';
export * from './hmac.js';
export * from './sev-cert.js';
export * from './amd-cert.js';
export * from './amd-root-certs.js';
export * from './builtin-amd-roots.js';
export * from './chain.js';
export * from './mint.js';
export * from './session.js';
export * from './measurement.js';
export * from './channel.js';
export * from './secret.js';
export * from './transport.js';
export * from './guid.js';
export * from './secret-table.js';
export * from './kernel-hashes.js';
export * from './attestation.js';
export * from './policy.js';

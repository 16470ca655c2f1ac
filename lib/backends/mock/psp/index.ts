/** The mock AMD Secure Processor firmware (SEV / SEV-ES) and its memory controllers. */
export type * from './api.js';
export { MockFirmware } from './firmware.js';
export type { MockFirmwareOptions } from './firmware.js';
export { NAPLES, ROME, MILAN, GENOA, PROFILES, apiAtLeast } from './processor-profiles.js';
export { memoryCipher, memoryCipherInto, memoryCounterBlock } from './memory-cipher.js';
export { CiphertextMemory } from './ciphertext-memory.js';
export { mockAmdRoot, mockAmdRoots, mockAmdRootAsync, rootBitsFor } from './mock-amd-root.js';
export type { MockAmdRoot } from './mock-amd-root.js';
export { PlatformIdentity, CHIP_ID_SIZE, p384KeyFromRandom } from './platform-keys.js';
export type { RandomSource } from './platform-keys.js';
export { MAX_GUESTS } from './guest-context.js';
export { CERT_CHAIN_SIZE } from './platform-commands.js';
export type { PdhCertExportOut } from './platform-commands.js';
export type { SendStartOut, SendUpdateOut } from './migration-commands.js';
export { VMSA_SIZE } from './launch-commands.js';

/**
 * Which mock, if any, serves SEV behind a backend: the mock host itself, the hybrid's mocked SEV
 * (real KVM, the mock's kernel SEV code and firmware), or none on the native backend. The CLI and
 * the demo ask it for what only a mock has: the AMD root its firmware's certificates chain to (a
 * fixed test root, which an owner has to be told to trust), and its ioctl trace.
 */
import type { Backend } from '../backend/contract.js';
import { HybridBackend } from '../backends/hybrid/hybrid-backend.js';
import { MockHost } from '../backends/mock/mock-host.js';
import type { MockFirmware } from '../backends/mock/psp/firmware.js';

/** The mock behind `backend`; undefined for a backend with real SEV. */
export function mockBehind(backend: Backend): MockHost | undefined {
  if (backend instanceof MockHost) return backend;
  if (backend instanceof HybridBackend) return backend.mock;
  return undefined;
}

/**
 * The ASK and ARK (AMD's format) a mocked firmware's chain ends in; undefined on a real host (AMD's
 * roots are built into the owner's verifier) and for a custom firmware that does not say.
 */
export function mockAmdRoot(backend: Backend): { ask: Uint8Array; ark: Uint8Array } | undefined {
  const fw = mockBehind(backend)?.firmware as Partial<Pick<MockFirmware, 'amdCerts'>> | undefined;
  const certs = fw?.amdCerts?.(); // ASK ‖ ARK, the same size
  if (!certs) return undefined;
  const half = certs.length / 2;
  return { ask: certs.subarray(0, half), ark: certs.subarray(half) };
}

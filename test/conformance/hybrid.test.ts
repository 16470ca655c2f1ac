/** The conformance suites against the hybrid backend (real /dev/kvm, mocked SEV). */
import { HybridBackend } from '../../lib/backends/hybrid/hybrid-backend.js';
import { batchSuite } from './batch.js';
import { boundarySuite } from './boundary.js';
import { cpuModesSuite } from './cpu-modes.js';
import { lifecycleSuite } from './lifecycle.js';
import { kvmDevice } from '../helpers/hw.js';

const req = kvmDevice();
boundarySuite({ name: 'hybrid', req, make: () => new HybridBackend() });
batchSuite({ name: 'hybrid', req, make: () => new HybridBackend() });
cpuModesSuite({ name: 'hybrid', req, make: () => new HybridBackend() });
lifecycleSuite({
  name: 'hybrid',
  req,
  make: (o = {}) => new HybridBackend(o.memlockBytes !== undefined ? { memlock: { limit: o.memlockBytes, capIpcLock: false } } : {}),
  mockedMemlock: true,
  asidsHeld: (b) => (b as HybridBackend).sevSnapshot.asidsHeld,
});

/** The conformance suites against the mock backend (runs everywhere). */
import { MockHost } from '../../lib/backends/mock/mock-host.js';
import { batchSuite } from './batch.js';
import { boundarySuite } from './boundary.js';
import { cpuModesSuite } from './cpu-modes.js';
import { lifecycleSuite } from './lifecycle.js';

const always = { ok: true, reason: '' };
boundarySuite({ name: 'mock', req: always, make: () => new MockHost() });
batchSuite({ name: 'mock', req: always, make: () => new MockHost() });
cpuModesSuite({ name: 'mock', req: always, make: () => new MockHost() });
lifecycleSuite({
  name: 'mock',
  req: always,
  make: (o = {}) => new MockHost(o.memlockBytes !== undefined ? { memlock: { limit: o.memlockBytes, capIpcLock: false } } : {}),
  mockedMemlock: true,
  asidsHeld: (b) => (b as MockHost).sev.snapshot().asidsHeld,
});

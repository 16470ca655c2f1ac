/** The conformance suites against the native backend (the real /dev/kvm, and SEV where the host has it). */
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { openHost } from '../../lib/app/open-host.js';
import { batchSuite } from './batch.js';
import { boundarySuite } from './boundary.js';
import { cpuModesSuite } from './cpu-modes.js';
import { lifecycleSuite } from './lifecycle.js';
import { kvmDevice, type Requirement } from '../helpers/hw.js';

const kvm = kvmDevice();
boundarySuite({ name: 'native', req: kvm, make: () => new NativeBackend() });
batchSuite({ name: 'native', req: kvm, make: () => new NativeBackend() });
cpuModesSuite({ name: 'native', req: kvm, make: () => new NativeBackend() });

// The lifecycle needs real SEV: pending with the reason where the host lacks it.
async function sevHost(): Promise<Requirement> {
  if (!kvm.ok) return kvm;
  const h = await openHost();
  return h.name === 'native' ? { ok: true, reason: '' } : { ok: false, reason: `no SEV on this host: ${h.reason}` };
}
lifecycleSuite({ name: 'native', req: await sevHost(), make: () => new NativeBackend(), mockedMemlock: false });

/** The conformance suites against the native backend (the real /dev/kvm). */
import { NativeBackend } from '../lib/backend/native/native-backend.js';
import { boundarySuite } from './conformance/boundary.js';
import { kvmDevice } from './helpers/hw.js';

boundarySuite({ name: 'native', req: kvmDevice(), make: () => new NativeBackend() });

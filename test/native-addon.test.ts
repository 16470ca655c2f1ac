/**
 * The native addon's own entry points refuse foreign objects and bad arguments with typed errors:
 * what only the native backend has (the backend-level rules are in test/conformance/).
 */
import type { ExecutionContext } from 'ava';
import { loadAddon } from '../lib/backend/native/addon.js';
import { NativeBackend } from '../lib/backend/native/native-backend.js';
import * as ioc from '../lib/uapi/ioctls.js';
import { hwTest, kvmDevice } from './helpers/hw.js';

const req = kvmDevice();

function code(t: ExecutionContext, f: () => unknown, c: string, name?: string): void {
  const e = t.throws(f) as (Error & { code?: string }) | undefined;
  t.is(e?.code, c, e?.message);
  if (name) t.is(e?.name, name);
}

function setup() {
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  return { b, kvm, close: () => kvm.close() };
}

hwTest(req, 'wrong argument types are TypeErrors with ERR_INVALID_ARG_TYPE', (t) => {
  const { b, kvm, close } = setup();
  const a = loadAddon();
  code(t, () => b.ioctl({} as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => b.ioctl({ fd: kvm.fd } as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.ioctl({} as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE', 'TypeError');
  code(t, () => a.ioctl(null as never, ioc.KVM_GET_API_VERSION), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.ioctl(12345, ioc.KVM_GET_API_VERSION), 'EBADF'); // not one of our fds
  code(t, () => b.ioctl(kvm, '44544' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, -1), 'ERR_OUT_OF_RANGE', 'RangeError');
  code(t, () => b.ioctl(kvm, 2 ** 32), 'ERR_OUT_OF_RANGE');
  code(t, () => b.ioctl(kvm, ioc.KVM_GET_API_VERSION, 'x' as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => b.ioctl(kvm, ioc.KVM_CHECK_EXTENSION, {} as never), 'ERR_INVALID_ARG_TYPE');
  code(t, () => a.open('/etc/passwd', true), 'ERR_INVALID_ARG_VALUE');
  code(t, () => b.mmapAnonymous(4095), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(0), 'ERR_OUT_OF_RANGE');
  code(t, () => b.mmapAnonymous(-4096), 'ERR_OUT_OF_RANGE');
  // Native classes cannot be constructed or called on foreign objects.
  const FdHandle = (a as unknown as { FdHandle: new (...x: unknown[]) => unknown }).FdHandle;
  code(t, () => new FdHandle(), 'ERR_ILLEGAL_CONSTRUCTOR');
  code(t, () => new a.VcpuRunner({} as never, 12288), 'ERR_INVALID_ARG_TYPE');
  code(t, () => new a.VcpuRunner(kvm, 12288), 'ERR_INVALID_ARG_VALUE');
  t.throws(() => (FdHandle.prototype as { close(): void }).close.call({}));
  close();
});

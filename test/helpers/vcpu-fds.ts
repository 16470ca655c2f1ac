/** /dev/kvm, a VM and a vCPU opened through a backend, for tests that need the three fds. */
import type { ExecutionContext } from 'ava';
import type { Backend } from '../../lib/backend/contract.js';
import * as ioc from '../../lib/uapi/ioctls.js';

/** Opens /dev/kvm, a VM and vCPU 0; each is closed when the test ends, whatever happened. */
export function openVcpuFds(t: ExecutionContext, b: Backend) {
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
  t.teardown(() => vcpu.close());
  /** Closes them now (close() is idempotent: the teardowns do nothing more). */
  const close = () => [vcpu, vm, kvm].forEach((f) => f.close());
  return { kvm, vm, vcpu, close };
}

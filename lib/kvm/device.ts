/**
 * Device attributes (KVM_SET/GET/HAS_DEVICE_ATTR) on a VM, vCPU or device fd, and the device fds
 * KVM_CREATE_DEVICE returns (on x86: KVM_DEV_TYPE_VFIO).
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * import { KVM_DEV_TYPE, KVM_DEV_VFIO } from 'kvm-sev/uapi';
 *
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using vm = kvm.createVm();
 * if (vm.testDevice(KVM_DEV_TYPE.VFIO)) {
 *   using vfio = vm.createDevice(KVM_DEV_TYPE.VFIO);
 *   console.log(vfio.hasAttr(KVM_DEV_VFIO.GROUP, KVM_DEV_VFIO.GROUP_ADD)); // true
 * }
 * ```
 */
import type { Backend, BackendFd } from '../backend/contract.js';
import * as ioc from '../uapi/ioctls.js';
import { kvm_device_attr, u64_value } from '../uapi/kvm-structs.js';

/** KVM_SET_DEVICE_ATTR: the attribute's 8-byte value (KVM reads `*addr`). See KVM_SET_DEVICE_ATTR. */
export function setDeviceAttr(
  backend: Backend,
  fd: BackendFd,
  group: number,
  attr: bigint | number,
  value: bigint | number,
  flags = 0,
): void {
  const addr = u64_value.encode({ value: BigInt.asUintN(64, BigInt(value)) });
  backend.ioctl(fd, ioc.KVM_SET_DEVICE_ATTR, kvm_device_attr.arg({ flags, group, attr: BigInt(attr), addr }));
}

/** KVM_GET_DEVICE_ATTR: the attribute's value (KVM writes `*addr`). See KVM_GET_DEVICE_ATTR. */
export function getDeviceAttr(backend: Backend, fd: BackendFd, group: number, attr: bigint | number, flags = 0): bigint {
  const addr = new Uint8Array(8);
  backend.ioctl(fd, ioc.KVM_GET_DEVICE_ATTR, kvm_device_attr.arg({ flags, group, attr: BigInt(attr), addr }));
  return u64_value.decode(addr).value;
}

/** KVM_HAS_DEVICE_ATTR: true if the attribute exists (ENXIO: false). See KVM_HAS_DEVICE_ATTR. */
export function hasDeviceAttr(backend: Backend, fd: BackendFd, group: number, attr: bigint | number, flags = 0): boolean {
  try {
    backend.ioctl(fd, ioc.KVM_HAS_DEVICE_ATTR, kvm_device_attr.arg({ flags, group, attr: BigInt(attr) }));
    return true;
  } catch (e) {
    if ((e as { code?: string }).code === 'ENXIO') return false;
    throw e;
  }
}

/** A device fd from {@link Vm.createDevice}. */
export class KvmDevice implements Disposable {
  readonly backend: Backend;
  readonly fd: BackendFd;
  /** KVM_DEV_TYPE_* */
  readonly type: number;

  /** @internal */
  constructor(backend: Backend, fd: BackendFd, type: number) {
    this.backend = backend;
    this.fd = fd;
    this.type = type;
  }
  setAttr(group: number, attr: bigint | number, value: bigint | number): void {
    setDeviceAttr(this.backend, this.fd, group, attr, value);
  }
  getAttr(group: number, attr: bigint | number): bigint {
    return getDeviceAttr(this.backend, this.fd, group, attr);
  }
  hasAttr(group: number, attr: bigint | number): boolean {
    return hasDeviceAttr(this.backend, this.fd, group, attr);
  }
  close(): void {
    this.fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * How the mock kernel fails: handlers throw a {@link KernelErrno} (the kernel's `return -EFOO`), and
 * the ioctl boundary turns it into the backend's KvmError with the request name, as the native shim does.
 */
export const E = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ETIMEDOUT: 110,
  /** Kernel-internal, leaks to userspace (SEV GET_ID on old firmware). */
  ENOTSUPP: 524,
} as const);

export class KernelErrno extends Error {
  /** Positive errno. */
  readonly errno: number;
  constructor(errno: number, detail?: string) {
    super(detail ?? `errno ${errno}`);
    this.name = 'KernelErrno';
    this.errno = errno;
  }
}

/** `return -errno` */
export function fail(errno: number, detail?: string): never {
  throw new KernelErrno(errno, detail);
}

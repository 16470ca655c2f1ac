/**
 * eventfd(2) in the mock kernel (fs/eventfd.c): a 64-bit counter. write adds (EAGAIN if it would
 * reach 2^64 - 1), read takes the whole counter (or 1 in semaphore mode) and EAGAINs at 0 (every
 * mock eventfd is non-blocking, as the native shim opens them). Kernel consumers (irqfd) register a
 * wake-up, as eventfd_ctx_fileget() users do, and take the count themselves.
 */
import { KernelFile } from './files.js';
import { E, fail } from './errno.js';

const MAX = 0xffff_ffff_ffff_fffen; // ULLONG_MAX - 1

export class EventfdFile extends KernelFile {
  readonly kind = 'eventfd' as const;
  readonly path = 'anon_inode:[eventfd]';
  count: bigint;
  readonly semaphore: boolean;
  /** A kernel consumer (irqfd_wakeup): called after each write, may consume the count. */
  onSignal: ((f: EventfdFile) => void) | undefined;
  /** Waiters from eventfdWait (user side), woken after a write. */
  readonly waiters: (() => void)[] = [];

  constructor(initval: number, semaphore: boolean) {
    super();
    this.count = BigInt(initval);
    this.semaphore = semaphore;
  }

  /** eventfd_write(): add `n` (n >= 1), then wake consumers and pollers. */
  write(n: bigint): void {
    if (n === 0xffff_ffff_ffff_ffffn) fail(E.EINVAL);
    if (MAX - this.count < n) fail(E.EAGAIN, 'eventfd counter would overflow');
    this.count += n;
    this.onSignal?.(this);
    for (const w of this.waiters.splice(0)) w();
  }

  /** eventfd_read() without blocking: the count (0n for EAGAIN). */
  read(): bigint {
    if (this.count === 0n) return 0n;
    const v = this.semaphore ? 1n : this.count;
    this.count -= v;
    return v;
  }

  protected release(): void {
    this.onSignal = undefined;
  }
}

/**
 * An eventfd as an owned object: what KVM_IRQFD (write it to inject an interrupt) and KVM_IOEVENTFD
 * (KVM writes it when the guest touches a port or an address) take. `wait()` settles on the event
 * loop, without a thread per eventfd.
 *
 * ```ts
 * using doorbell = vm.eventfd();
 * vm.ioeventfd({ eventfd: doorbell, addr: 0x600, len: 1, pio: true });
 * const count = await doorbell.wait();      // the guest wrote port 0x600 `count` times, no exit to JS
 * ```
 */
import type { Backend, BackendFd } from '../backend/contract.js';

export class EventFd implements Disposable {
  readonly backend: Backend;
  readonly fd: BackendFd;

  private constructor(backend: Backend, fd: BackendFd) {
    this.backend = backend;
    this.fd = fd;
  }

  /** eventfd(2) on `backend` (non-blocking, close-on-exec; `semaphore`: EFD_SEMAPHORE). */
  static create(backend: Backend, options: { initval?: number; semaphore?: boolean } = {}): EventFd {
    return new EventFd(backend, backend.eventfd(options));
  }

  get closed(): boolean {
    return this.fd.closed;
  }

  /** Adds `n` to the counter (an irqfd injects its interrupt). */
  signal(n = 1n): void {
    this.backend.eventfdWrite(this.fd, n);
  }

  /** The counter, reset to 0 (0n if nothing was signalled); never blocks. */
  read(): bigint {
    return this.backend.eventfdRead(this.fd);
  }

  /** Resolves with the counter once it is non-zero. One wait at a time; close() rejects it (ABORT_ERR). */
  wait(): Promise<bigint> {
    return this.backend.eventfdWait(this.fd);
  }

  /** Cancels a wait in flight, then closes. Idempotent. */
  close(): void {
    if (this.fd.closed) return;
    this.backend.eventfdCancel(this.fd);
    this.fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

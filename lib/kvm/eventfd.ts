/**
 * An eventfd as an owned object: what KVM_IRQFD (write it to inject an interrupt) and KVM_IOEVENTFD
 * (KVM writes it when the guest touches a port or an address) take. `wait()` settles on the event
 * loop, without a thread per eventfd. On the mock, queued guest ops stand in for the guest's OUTs:
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 *
 * const host = new MockHost();
 * using kvm = Kvm.open({ backend: host });
 * using vm = kvm.createVm();
 * vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const vcpu = vm.createVcpu(0);
 * using doorbell = vm.eventfd();
 * vm.ioeventfd({ eventfd: doorbell, addr: 0x600, len: 1, pio: true });
 * host.queueGuestOps(vcpu.fd, [
 *   { op: 'out', port: 0x600, size: 1, value: 1 }, // the doorbell: no exit to JS
 *   { op: 'out', port: 0x500, size: 1, value: 0 },
 * ]);
 * const exit = await vcpu.run();
 * console.log(exit.reason === 'io' && exit.port, await doorbell.wait()); // 1280 1n
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

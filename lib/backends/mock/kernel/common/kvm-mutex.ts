/**
 * `kvm->lock` as the mock kernel takes it: a sleeping mutex (mutex_lock / mutex_lock_killable), held
 * by one call at a time, FIFO for the callers that wait. An async ioctl may wait for it and may hold
 * it across an await while the firmware works, so calls on one VM serialise as they do in the kernel
 * and calls on different VMs interleave.
 *
 * A synchronous ioctl cannot sleep until another call lets go (it runs on the only JS thread, and the
 * holder finishes on a timer of that thread). It waits the way a thread would: the calls ahead of it
 * run to their release first ({@link LockOwner.settle}: a holder's remaining firmware time is slept
 * out, a waiter gets the lock, runs, and is settled in turn). Chains of waiters end at a holder,
 * because no call waits for a second mutex while the first one's owner waits for it: MOVE and COPY
 * mark both VMs migrating (kvm_sev_info.migration_in_progress, EBUSY when taken) before they take
 * two mutexes, and every other call takes one.
 */
import { KvmSevError } from '../../../../backend/errors.js';

/** Who holds or waits for a mutex. */
export interface LockOwner {
  /** Run this call to the point where it releases its mutexes (synchronously). */
  settle(): void;
}

export class KvmMutex {
  private owner: LockOwner | undefined;
  private readonly waiters: { owner: LockOwner; grant: () => void }[] = [];

  get locked(): boolean {
    return this.owner !== undefined;
  }

  /** mutex_lock from an async call: true if taken now; otherwise `grant` runs when it is handed over. */
  lock(owner: LockOwner, grant: () => void): boolean {
    if (!this.owner) {
      this.owner = owner;
      return true;
    }
    this.waiters.push({ owner, grant });
    return false;
  }

  /** mutex_lock from a synchronous call: the calls ahead run to their release first. */
  lockSync(owner: LockOwner): void {
    for (let guard = 0; this.owner; guard++) {
      if (guard > 1_000_000) throw new KvmSevError('ERR_KVM_SEV_MOCK_DEADLOCK', 'kvm->lock: the calls ahead never release it');
      this.owner.settle();
    }
    this.owner = owner;
  }

  /** Settle whoever holds it now (a waiter on this mutex wants its turn). */
  settleOwner(): void {
    this.owner?.settle();
  }

  /** mutex_unlock: the next waiter (if any) gets it and runs on. */
  unlock(owner: LockOwner): void {
    if (this.owner !== owner) return;
    const next = this.waiters.shift();
    this.owner = next?.owner;
    next?.grant();
  }
}

/** The owner a synchronous call holds mutexes as: it never waits, so it is never settled from outside. */
export function syncOwner(): LockOwner {
  return {
    settle() {
      throw new KvmSevError('ERR_KVM_SEV_MOCK_DEADLOCK', 'a synchronous call holds kvm->lock while the call ahead of it waits for it');
    },
  };
}

/**
 * How an ioctl runs through the mock kernel once its argument is marshalled: the kernel's entry
 * (checks that never sleep), its kvm->lock mutexes (kernel/common/kvm-mutex.ts), the handler, and the
 * firmware's time.
 *
 * Synchronous (ioctl): the mutexes are taken at once (the calls ahead run to their release first),
 * the handler runs, the mutexes are released; the firmware's time is slept out by the caller.
 *
 * Asynchronous (ioctlAsync): a call takes free mutexes at once and waits for held ones, so other calls
 * run meanwhile; MOVE and COPY first let other calls run after marking both VMs (a second MOVE on
 * either then answers EBUSY, as with threads). The handler runs when the call has its mutexes, and the
 * call keeps them while the firmware works (until its PSP time has passed, or the next turn of the
 * event loop), then releases them and settles.
 */
import { performance } from 'node:perf_hooks';
import { KernelErrno } from '../kernel/common/errno.js';
import { syncOwner, type KvmMutex, type LockOwner } from '../kernel/common/kvm-mutex.js';
import type { KernelFile } from '../kernel/common/files.js';
import type { KernelCall } from '../kernel/kernel.js';

/** What the handler left: an errno (0: none), the result, the PSP time it took. */
export interface CallOutcome {
  errno: number;
  result: KernelFile | number;
  delayMs: number;
}

export interface CallSteps {
  /** The kernel's entry (throws KernelErrno for an early failure). */
  begin(): KernelCall;
  /** Runs `exec` as the kernel would (trace, PSP timeline) and records its outcome. */
  execute(exec: () => KernelFile | number): CallOutcome;
}

/** Sleeps the JS thread (a synchronous call waiting for the firmware). */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** An early failure of the kernel's entry, as the handler's own outcome. */
function entry(steps: CallSteps): KernelCall | CallOutcome {
  try {
    return steps.begin();
  } catch (e) {
    if (!(e instanceof KernelErrno)) throw e;
    return steps.execute(() => {
      throw e;
    });
  }
}

/** One synchronous call. */
export function runSync(steps: CallSteps): CallOutcome {
  const plan = entry(steps);
  if (!('mutexes' in plan)) return plan;
  const me = syncOwner();
  const held: KvmMutex[] = [];
  try {
    for (const m of plan.mutexes) {
      m.lockSync(me);
      held.push(m);
    }
    return steps.execute(() => plan.run());
  } finally {
    for (const m of held.reverse()) m.unlock(me);
    plan.done();
  }
}

/** One asynchronous call; `settled` gets its outcome (or a thrown error) once it has released everything. */
export class AsyncCall implements LockOwner {
  private plan: KernelCall | undefined;
  private readonly held: KvmMutex[] = [];
  private state: 'entering' | 'waiting' | 'holding' | 'done' = 'entering';
  private waitingOn: KvmMutex | undefined;
  private outcome: CallOutcome | undefined;
  private failure: unknown;
  private holdUntil = 0;
  private timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | undefined;

  constructor(
    private readonly steps: CallSteps,
    private readonly settled: (outcome: CallOutcome | undefined, error: unknown) => void,
  ) {}

  start(): void {
    let plan: KernelCall | CallOutcome;
    try {
      plan = entry(this.steps);
    } catch (e) {
      this.failure = e;
      return this.hold(0);
    }
    if (!('mutexes' in plan)) {
      this.outcome = plan;
      return this.hold(0);
    }
    this.plan = plan;
    if (plan.yields && plan.mutexes.length > 0) {
      this.state = 'waiting';
      this.timer = setImmediate(() => {
        this.timer = undefined;
        this.acquire();
      });
      return;
    }
    this.acquire();
  }

  /** Takes the remaining mutexes in order (waiting where one is held), then runs. */
  private acquire(): void {
    const plan = this.plan!;
    while (this.held.length < plan.mutexes.length) {
      const m = plan.mutexes[this.held.length]!;
      this.state = 'waiting';
      this.waitingOn = m;
      const now = m.lock(this, () => {
        this.waitingOn = undefined;
        this.held.push(m);
        this.acquire();
      });
      if (!now) return;
      this.waitingOn = undefined;
      this.held.push(m);
    }
    try {
      this.outcome = this.steps.execute(() => plan.run());
    } catch (e) {
      this.failure = e;
    }
    this.hold(this.outcome?.delayMs ?? 0);
  }

  /** Keeps the mutexes while the firmware works. */
  private hold(ms: number): void {
    this.state = 'holding';
    this.holdUntil = performance.now() + ms;
    this.timer = ms > 0 ? setTimeout(() => this.release(), ms) : setImmediate(() => this.release());
  }

  /** A synchronous call needs what this call holds or waits for: run it to its release now. */
  settle(): void {
    for (let guard = 0; this.state === 'waiting' || this.state === 'entering'; guard++) {
      if (guard > 1_000_000) throw new Error('AsyncCall.settle: no progress');
      if (this.waitingOn) this.waitingOn.settleOwner();
      else {
        this.cancelTimer();
        this.acquire();
      }
    }
    if (this.state !== 'holding') return;
    this.cancelTimer();
    sleepSync(this.holdUntil - performance.now());
    this.release();
  }

  private cancelTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer as ReturnType<typeof setTimeout>);
    clearImmediate(this.timer as ReturnType<typeof setImmediate>);
    this.timer = undefined;
  }

  private release(): void {
    if (this.state === 'done') return;
    this.state = 'done';
    this.cancelTimer();
    for (const m of this.held.splice(0).reverse()) m.unlock(this);
    this.plan?.done();
    this.settled(this.outcome, this.failure);
  }
}

/**
 * A VMM's vCPU loop with what migration asks of it: pause (no KVM_RUN in flight when it resolves),
 * resume, and a throttle for auto-converge (the vCPUs sleep for a share of the time, as QEMU's
 * cpu_throttle_thread() does). `handle` serves each exit; returning false ends that vCPU's loop.
 */
import type { VcpuExit } from '../../kvm/exits.js';
import type { Vcpu } from '../../kvm/vcpu.js';

export type ExitHandler = (vcpu: Vcpu, exit: VcpuExit) => boolean | Promise<boolean>;

const SLICE_MS = 10;

export class VcpuLoop {
  private paused = false;
  private stopped = false;
  private fraction = 0;
  private running = 0;
  private wake: (() => void)[] = [];
  private idle: (() => void)[] = [];
  /** Resolves when every vCPU's loop has ended (its handler returned false, or stop()). */
  readonly done: Promise<void>;
  private loops: Promise<void>[] = [];

  constructor(
    readonly vcpus: readonly Vcpu[],
    private readonly handle: ExitHandler,
  ) {
    this.loops = vcpus.map((v) => this.loop(v));
    this.done = Promise.all(this.loops).then(() => undefined);
  }

  private async loop(v: Vcpu): Promise<void> {
    let ranSince = performance.now();
    for (;;) {
      if (this.paused && !this.stopped) {
        this.settle();
        await new Promise<void>((r) => this.wake.push(r));
        ranSince = performance.now();
      }
      if (this.stopped) return this.settle();
      this.running++;
      let exit: VcpuExit;
      try {
        exit = await v.run();
      } finally {
        this.running--;
      }
      if (exit.reason === 'intr') continue;
      if (!(await this.handle(v, exit))) {
        this.settle();
        return;
      }
      // Throttle: after each slice of running, sleep so that sleep / (run + sleep) = fraction.
      const ran = performance.now() - ranSince;
      if (this.fraction > 0 && ran >= SLICE_MS) {
        await new Promise((r) => setTimeout(r, (ran * this.fraction) / (1 - this.fraction)));
        ranSince = performance.now();
      }
    }
  }

  private settle(): void {
    if (this.running === 0) for (const f of this.idle.splice(0)) f();
  }

  /** Stops the vCPUs; resolves once no KVM_RUN is in flight. */
  async pause(): Promise<void> {
    this.paused = true;
    for (const v of this.vcpus) v.kick();
    if (this.running === 0) return;
    await new Promise<void>((r) => this.idle.push(r));
  }

  resume(): void {
    this.paused = false;
    for (const f of this.wake.splice(0)) f();
  }

  throttle(fraction: number): void {
    this.fraction = Math.max(0, Math.min(0.99, fraction));
  }

  /** Ends the loops (after the current exit). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const v of this.vcpus) v.kick();
    for (const f of this.wake.splice(0)) f();
    await this.done;
  }
}

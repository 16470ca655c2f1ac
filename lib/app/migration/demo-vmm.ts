/**
 * A small VMM for the live-migration demo, the CLI's `migrate`/`receive` and the tests: it launches
 * the migration guest (lib/app/guest/migration-programs.ts) as an SEV guest, runs it on a
 * {@link VcpuLoop}, serves its hypercall and MSR exits into the page-state tracker, records every step the
 * guest reports, and hands {@link migrate} the {@link LiveGuest} it needs; on the target it takes a
 * received guest and runs it on.
 */
import type { Kvm } from '../../kvm/kvm.js';
import type { GuestMemory } from '../../kvm/guest-memory.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { Vm } from '../../kvm/vm.js';
import { SevGuestCommands } from '../../sev/kvm-sev-commands.js';
import { SevLaunch } from '../../sev/launch.js';
import type { SevPlatform } from '../../sev/platform.js';
import type { LiveGuest } from '../../migration/live/source.js';
import type { ReceivedGuest } from '../../migration/live/target.js';
import { VcpuLoop } from '../../migration/live/vcpu-loop.js';
import { KVM_X86_SEV_VM } from '../../uapi/constants.js';
import { KVM_MSR_EXIT_REASON, KVM_MSR_FILTER, KVM_MSR_FILTER_DEFAULT_ALLOW } from '../../uapi/vmm-constants.js';
import { KVM_HC_MAP_GPA_RANGE, MIGRATION_GUEST, MSR_KVM_MIGRATION_CONTROL, migrationGuestProgram } from '../guest/migration-programs.js';
import { loadProgram } from '../guest/setup.js';
import { PageStateTracker, type PageStateSnapshot } from '../../sev/page-states/page-state-tracker.js';
import { handleMapGpaRange } from '../../sev/page-states/map-gpa-range.js';
import { handleMigrationControlMsr } from '../../sev/page-states/migration-control-msr.js';
import { KvmSevError } from '../../backend/errors.js';

/** The demo guest's layout (all below 1 MiB: the guest runs in real mode). */
export const DEMO_LAYOUT = Object.freeze({
  /** Pages the guest dirties, one per step, in turn. */
  dirty: { start: 0x70000, end: 0x90000 },
  /** Made shared at start. */
  shared: { gpa: 0x50000, pages: 4 },
  /** Flipped between shared and private every 64 steps. */
  flip: { gpa: 0x60000, pages: 4, every: 64 },
  /** Private pages the guest never touches (tests plant a pattern here). */
  secret: { gpa: 0x40000, pages: 4 },
});

export interface DemoVmmOptions {
  /** Steps per second the guest may take (each dirties a page); default: as fast as it runs. */
  stepsPerSecond?: number;
  /** Ring the hybrid's hypercall doorbell (a host whose KVM cannot return VMMCALL to user space). */
  doorbell?: boolean;
}

export interface LaunchDemoOptions extends DemoVmmOptions {
  kvm: Kvm;
  platform: SevPlatform;
  /** Guest RAM in bytes (at least 1 MiB; default 1 MiB). */
  memorySize?: number;
  policy?: number;
  /** The guest writes MSR_KVM_MIGRATION_CONTROL = 1 (default true). */
  announceReady?: boolean;
  /** The range the guest makes shared at start (default DEMO_LAYOUT.shared; 32-bit addresses). */
  shared?: { gpa: number; pages: number };
  /** The pages the guest dirties in turn (default DEMO_LAYOUT.dirty; below 1 MiB, clear of the other ranges). */
  dirty?: { start: number; end: number };
  /** Called with the guest's memory before LAUNCH_UPDATE_DATA encrypts it (tests plant patterns). */
  plant?: (mem: GuestMemory) => void;
}

/** The VMM-side set-up a migration target repeats on its new VM: hypercall and MSR exits. */
export function setUpExits(vm: Vm): void {
  vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
  vm.enableUserSpaceMsr(KVM_MSR_EXIT_REASON.FILTER);
  vm.setMsrFilter(KVM_MSR_FILTER_DEFAULT_ALLOW, [
    { flags: KVM_MSR_FILTER.READ | KVM_MSR_FILTER.WRITE, base: MSR_KVM_MIGRATION_CONTROL, nmsrs: 1 },
  ]);
}

export class DemoVmm {
  /** Every count the guest reported, in order. */
  readonly steps: number[] = [];
  /** Set if the guest stopped with an exit the VMM does not serve. */
  failure: string | undefined;
  readonly loop: VcpuLoop;
  private readonly interval: number;
  private nextAt = 0;

  constructor(
    readonly vm: Vm,
    readonly vcpu: Vcpu,
    readonly memory: GuestMemory,
    readonly sev: SevGuestCommands,
    readonly platform: SevPlatform,
    readonly pageStates: PageStateTracker,
    o: DemoVmmOptions,
  ) {
    this.interval = o.stepsPerSecond ? 1000 / o.stepsPerSecond : 0;
    pageStates.addVcpu(vcpu.id);
    this.loop = new VcpuLoop([vcpu], async (_v, exit) => {
      // The KVM_RUN that returned this exit re-entered the guest with the last hypercall's answer.
      pageStates.settle(vcpu.id);
      if (exit.reason === 'io' && exit.port === MIGRATION_GUEST.PORT && exit.direction === 'out') {
        this.steps.push(Buffer.from(exit.data).readUInt32LE(0));
        if (this.interval > 0) {
          const now = performance.now();
          this.nextAt = Math.max(this.nextAt + this.interval, now - 50);
          if (this.nextAt > now + 1) await new Promise((r) => setTimeout(r, this.nextAt - now));
        }
        return true;
      }
      if (handleMapGpaRange(pageStates, vcpu.id, exit) || handleMigrationControlMsr(pageStates, vcpu.id, exit)) return true;
      this.failure = `the guest stopped: ${exit.reason}${exit.reason === 'io' ? ` port 0x${exit.port.toString(16)}` : ''}`;
      return false;
    });
  }

  /** Resolves once the guest has reported `n` more steps (or stopped). */
  async waitSteps(n: number, timeoutMs = 30_000): Promise<void> {
    const want = this.steps.length + n;
    const until = performance.now() + timeoutMs;
    while (this.steps.length < want && !this.failure) {
      if (performance.now() > until) throw new Error(`the guest reported ${this.steps.length} of ${want} steps within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
    if (this.failure) throw new Error(this.failure);
  }

  /** What {@link migrate} takes. */
  liveGuest(): LiveGuest {
    return {
      vm: this.vm,
      vcpus: [this.vcpu],
      memory: [{ slot: 0, memory: this.memory }],
      sev: this.sev,
      platform: this.platform,
      pageStates: this.pageStates,
      pageStateSnapshot: () => this.pageStates.snapshot(),
      onSevEvent: (e) => this.pageStates.vmEvent(e, { ignoreMigrationControl: true }),
      completePending: () => {
        this.vcpu.completePendingIo();
        this.pageStates.settle(this.vcpu.id);
      },
      pause: () => this.loop.pause(),
      resume: () => this.loop.resume(),
      throttle: (f) => this.loop.throttle(f),
      devices: () => ({ demo: { lastStep: this.steps.at(-1) ?? 0 } }),
    };
  }

  /** Stops the vCPU loop and closes the VM (and its memory). */
  async close(): Promise<void> {
    await this.loop.stop();
    this.vcpu.close();
    this.vm.close();
    try {
      this.memory.close();
    } catch {
      /* still mapped by a slot of a live VM */
    }
  }

  /** Launches the demo guest as an SEV guest and starts it. */
  static async launch(o: LaunchDemoOptions): Promise<DemoVmm> {
    const size = o.memorySize ?? 0x100000;
    if (size < 0x100000 || size % 4096 !== 0) throw new RangeError('memorySize must be a multiple of 4096, at least 1 MiB');
    const vm = o.kvm.createVm(KVM_X86_SEV_VM);
    try {
      const mem = vm.addMemory({ guestPhysAddr: 0n, size, slot: 0 });
      setUpExits(vm);
      const launching = await (await SevLaunch.init(vm, { platform: o.platform })).launchStart({ policy: o.policy ?? 0 });
      const vcpu = vm.createVcpu(0);
      const L = DEMO_LAYOUT;
      loadProgram(
        mem,
        vcpu,
        migrationGuestProgram({
          dirtyStart: (o.dirty ?? L.dirty).start,
          dirtyEnd: (o.dirty ?? L.dirty).end,
          shared: o.shared ?? L.shared,
          flip: L.flip,
          doorbell: o.doorbell ?? false,
          announceReady: o.announceReady ?? true,
        }),
      );
      o.plant?.(mem);
      const states = new PageStateTracker({ ram: [{ gpa: 0n, size }] });
      states.vmEvent('LAUNCH_START');
      await launching.launchUpdateData(mem);
      states.launchUpdate(0n, size);
      await (await launching.launchMeasure()).launchFinish();
      states.vmEvent('LAUNCH_FINISH');
      return new DemoVmm(vm, vcpu, mem, new SevGuestCommands(vm, o.platform), o.platform, states, o);
    } catch (e) {
      vm.close();
      throw e;
    }
  }

  /**
   * Runs a received guest on (the target's half): its tracker goes on from the source's snapshot, as
   * a destination does (RECEIVE_START, the snapshot with this VM's state kept, RECEIVE_FINISH).
   */
  static adopt(r: ReceivedGuest, platform: SevPlatform, o: DemoVmmOptions = {}): DemoVmm {
    const m = r.memory[0]!;
    if (r.pageStateSnapshot === null)
      throw new KvmSevError(
        'ERR_KVM_SEV_PAGE_STATES',
        'the source sent no page-state snapshot: this VMM continues only guests whose source kept a PageStateTracker',
      );
    const states = new PageStateTracker({ ram: [{ gpa: m.memory.guestPhysAddr, size: m.memory.size }] });
    states.vmEvent('RECEIVE_START');
    states.restore(r.pageStateSnapshot as PageStateSnapshot, { keepVmState: true });
    states.vmEvent('RECEIVE_FINISH');
    return new DemoVmm(r.vm, r.vcpus[0]!, m.memory, r.sev, platform, states, o);
  }
}

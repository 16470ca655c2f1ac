/**
 * A guest that reports its page states, with the VMM side wired up: an SEV launch (the mock's or the
 * hybrid's firmware, or the real one), the page-state tracker fed by the launch, the guest's
 * KVM_HC_MAP_GPA_RANGE hypercalls and MSR_KVM_MIGRATION_CONTROL, and a scheduler that runs each vCPU
 * to its next synchronisation point (lib/app/guest/page-state-programs.ts), so tests, the CLI's
 * `page-map` command and the benchmark drive the same code.
 *
 * Where the guest runs: natively (VMMCALL), on the hybrid (real KVM; the hypercall through the
 * hybrid's EMULATED doorbell when it has one, since this host's KVM never returns a VMMCALL), or on the
 * mock, which runs no code: the same steps are queued as the instructions' effects
 * (`MockHost.queueGuestOps`) and the mock's KVM model produces the same exits.
 */
import type { Backend, BackendFd } from '../../backend/contract.js';
import { Kvm } from '../../kvm/kvm.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { Vm } from '../../kvm/vm.js';
import type { GuestMemory } from '../../kvm/guest-memory.js';
import { SevLaunch } from '../../sev/launch.js';
import { SevPlatform } from '../../sev/platform.js';
import { PageStateExits } from '../../sev/page-states/page-state-exits.js';
import { PageStateTracker, type PageStateTrackerOptions } from '../../sev/page-states/page-state-tracker.js';
import type { PageStateChange } from '../../sev/page-states/page-state-view.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM, MSR_KVM_MIGRATION_CONTROL } from '../../uapi/constants.js';
import {
  decodePageStateRecord,
  encodePageStateSteps,
  pageStateGuest,
  type PageStateRecordEntry,
  type PageStateStep,
} from '../guest/page-state-programs.js';
import { loadProgram } from '../guest/setup.js';
import { HYPERCALL_DOORBELL_PORT, VMM_PORT } from '../guest/vmm-programs.js';

/** Guest RAM: one 64 KiB real-mode segment. Pages 8..15 are the ones the steps usually share. */
export const PAGE_STATE_GUEST_RAM = 0x10000;
const MAX_STEPS = 63;
const layout = (i: number) => ({ origin: 0x1000 + i * 0x400, table: 0x3000 + i * 0x400, record: 0x5004 + i * 0x800 });

export interface PageStateGuestOptions {
  backend: Backend;
  /** Each vCPU's steps (at most 4 vCPUs, 63 steps each). */
  vcpus: readonly (readonly PageStateStep[])[];
  /** Launch the guest as an SEV guest (default true): LAUNCH_START, LAUNCH_UPDATE_DATA of the code, LAUNCH_FINISH. */
  sev?: boolean;
  /** Tracker options (generations, boot IDs, log). */
  tracker?: Omit<PageStateTrackerOptions, 'ram'>;
  /** memfd-backed guest memory (a handoff needs it). */
  memfd?: boolean;
}

type MockLike = Backend & { queueGuestOps(vcpu: BackendFd, ops: readonly unknown[]): void };
const isMock = (b: Backend): b is MockLike => typeof (b as Partial<MockLike>).queueGuestOps === 'function';
const hasDoorbell = (b: Backend) => (b as { hypercallDoorbell?: unknown }).hypercallDoorbell !== undefined;

/** Where the step a vCPU stopped at is. */
export type StopPoint = 'sync' | 'done';

export class PageStateGuest implements Disposable {
  readonly kvm: Kvm;
  readonly vm: Vm;
  readonly memory: GuestMemory;
  readonly vcpus: Vcpu[] = [];
  readonly tracker: PageStateTracker;
  readonly exits: PageStateExits;
  /** 'vmmcall' (a real hypercall), 'doorbell' (the hybrid's EMULATED one) or 'model' (the mock's queued instructions). */
  readonly hypercallPath: 'vmmcall' | 'doorbell' | 'model';
  /** Every change the tracker reported, in order. */
  readonly changes: PageStateChange[] = [];
  readonly finished: boolean[];
  private platform: SevPlatform | undefined;

  private constructor(
    kvm: Kvm,
    vm: Vm,
    memory: GuestMemory,
    tracker: PageStateTracker,
    exits: PageStateExits,
    path: PageStateGuest['hypercallPath'],
  ) {
    this.kvm = kvm;
    this.vm = vm;
    this.memory = memory;
    this.tracker = tracker;
    this.exits = exits;
    this.hypercallPath = path;
    this.finished = [];
    tracker.onChange((c) => this.changes.push(c));
  }

  static async create(o: PageStateGuestOptions): Promise<PageStateGuest> {
    if (o.vcpus.length < 1 || o.vcpus.length > 4) throw new RangeError(`1 to 4 vCPUs, got ${o.vcpus.length}`);
    for (const s of o.vcpus) if (s.length > MAX_STEPS) throw new RangeError(`at most ${MAX_STEPS} steps a vCPU, got ${s.length}`);
    const kvm = Kvm.open({ backend: o.backend });
    let vm: Vm | undefined;
    let platform: SevPlatform | undefined;
    try {
      const sev = o.sev ?? true;
      const init2 = sev && kvm.supportedVmTypes().includes(KVM_X86_SEV_VM);
      vm = kvm.createVm(init2 ? KVM_X86_SEV_VM : KVM_X86_DEFAULT_VM);
      const memory = vm.addMemory({ guestPhysAddr: 0n, size: PAGE_STATE_GUEST_RAM, ...(o.memfd ? { memfd: true } : {}) });
      const tracker = new PageStateTracker({ ...o.tracker, ram: [{ gpa: 0n, size: PAGE_STATE_GUEST_RAM }] });
      const exits = PageStateExits.attach(vm, tracker);
      const mock = isMock(o.backend);
      const path = mock ? 'model' : hasDoorbell(o.backend) ? 'doorbell' : 'vmmcall';
      const g = new PageStateGuest(kvm, vm, memory, tracker, exits, path);
      // SEV INIT comes before the vCPUs (KVM refuses it once they exist).
      let initialized: Awaited<ReturnType<typeof SevLaunch.init>> | undefined;
      if (sev) {
        platform = SevPlatform.open(o.backend);
        g.platform = platform;
        initialized = await SevLaunch.init(vm, { platform });
      }
      for (const [i, steps] of o.vcpus.entries()) {
        const vcpu = vm.createVcpu(i);
        g.vcpus.push(vcpu);
        g.finished.push(false);
        exits.advertise(vcpu, kvm.supportedCpuid());
        if (!mock) {
          const l = layout(i);
          memory.write(BigInt(l.table), encodePageStateSteps(steps));
          loadProgram(memory, vcpu, pageStateGuest({ ...l, doorbell: path === 'doorbell' }));
        } else {
          (o.backend as MockLike).queueGuestOps(vcpu.fd, mockOps(steps));
        }
      }
      if (initialized) {
        // The launch: the code and step tables are launch data (private); the rest becomes private at LAUNCH_FINISH.
        const launching = await initialized.launchStart({ policy: 0 });
        tracker.vmEvent('LAUNCH_START');
        const data = { gpa: 0x1000n, len: 0x5000 };
        await launching.launchUpdateData(memory.range(data.gpa, data.len));
        tracker.launchUpdate(data.gpa, data.len);
        await (await launching.launchMeasure()).launchFinish();
        tracker.vmEvent('LAUNCH_FINISH');
      }
      return g;
    } catch (e) {
      vm?.close();
      platform?.close();
      kvm.close();
      throw e;
    }
  }

  /** Runs vCPU `i` to its next sync step or to its end. */
  async step(i: number, timeoutMs = 10_000): Promise<StopPoint> {
    const vcpu = this.vcpus[i];
    if (!vcpu) throw new RangeError(`no vCPU ${i}`);
    if (this.finished[i]) return 'done';
    const timer = setTimeout(() => vcpu.kick(), timeoutMs);
    let exit;
    try {
      exit = await this.exits.run(vcpu);
    } finally {
      clearTimeout(timer);
    }
    if (exit.reason === 'io' && exit.direction === 'out' && exit.port === VMM_PORT.TICK) return 'sync';
    if (exit.reason === 'io' && exit.direction === 'out' && exit.port === VMM_PORT.DONE) {
      this.finished[i] = true;
      return 'done';
    }
    const what =
      exit.reason === 'intr'
        ? `no exit within ${timeoutMs} ms`
        : JSON.stringify(exit, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v));
    throw new Error(`vCPU ${i} stopped unexpectedly: ${what}`);
  }

  /** Runs the vCPUs in `schedule` order (each entry: run that vCPU to its next stop), then each to its end. */
  async run(schedule: readonly number[] = []): Promise<void> {
    for (const i of schedule) await this.step(i);
    for (let i = 0; i < this.vcpus.length; i++) while ((await this.step(i)) !== 'done');
  }

  /** vCPU `i`'s own record of what it asked and got (real guests only; the mock runs no code). */
  record(i: number): PageStateRecordEntry[] | undefined {
    if (this.hypercallPath === 'model') return undefined;
    const l = layout(i);
    return decodePageStateRecord(this.memory.read(BigInt(l.record - 4), 4 + MAX_STEPS * 32), l.record);
  }

  close(): void {
    for (const v of this.vcpus) v.close();
    this.vm.close();
    this.platform?.close();
    this.kvm.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The steps as the instructions' effects, for the mock's KVM model (a `sync`/end is an OUT to the VMM's port). */
function mockOps(steps: readonly PageStateStep[]): unknown[] {
  const ops: unknown[] = [];
  for (const s of steps) {
    if (s.op === 'map') ops.push({ op: 'vmmcall', nr: 12n, args: [BigInt(s.gpa), BigInt(s.pages), BigInt(s.attrs)] });
    else if (s.op === 'msr')
      ops.push(
        { op: 'wrmsr', index: MSR_KVM_MIGRATION_CONTROL, value: BigInt(s.value) },
        { op: 'rdmsr', index: MSR_KVM_MIGRATION_CONTROL },
      );
    else if (s.op === 'sync') ops.push({ op: 'out', port: VMM_PORT.TICK, size: 1, value: 0 });
    // cpuid: the mock's model has no CPUID instruction; the VMM's CPUID is checked with getCpuid2().
  }
  ops.push({ op: 'out', port: VMM_PORT.DONE, size: 1, value: 0 });
  return ops;
}

export { HYPERCALL_DOORBELL_PORT };

/**
 * The page-state tracker driven by a real guest on /dev/kvm (lib/app/guest/page-state-programs.ts):
 * MSR_KVM_MIGRATION_CONTROL through the real MSR filter exit, KVM_HC_MAP_GPA_RANGE through the hybrid's
 * EMULATED doorbell (this host's KVM never returns a VMMCALL from KVM_RUN: the real hypercall test is
 * pending with that reason), and the tracker checked against the guest's own record of what it asked
 * and what it got back. The kexec race of the v12 SEV live-migration patches with two real vCPUs. The handoff of a guest stopped in
 * the middle of a hypercall exit.
 */
import type { ExecutionContext } from 'ava';
import { HybridBackend } from '../lib/backends/hybrid/hybrid-backend.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { Kvm } from '../lib/kvm/kvm.js';
import { handOff, takeOver } from '../lib/migration/handoff.js';
import { PageStateGuest } from '../lib/app/demo/page-state-guest.js';
import type { PageStateRecordEntry, PageStateStep } from '../lib/app/guest/page-state-programs.js';
import { HYPERCALL_DOORBELL_PORT } from '../lib/app/guest/vmm-programs.js';
import { hypercallProgram } from '../lib/app/guest/vmm-programs.js';
import { loadProgram } from '../lib/app/guest/setup.js';
import { KVM_CAP, KVM_HC_MAP_GPA_RANGE } from '../lib/uapi/constants.js';
import type { PageState } from '../lib/sev/page-states/page-state-view.js';
import { hwTest, kvmDevice, type Requirement } from '../test/helpers/hw.js';
import { kexecRace, kexecRaceOneVcpu, sharedPages } from '../test/helpers/kexec-race.js';

const kvm = kvmDevice();
/** Whether a VMMCALL comes back from KVM_RUN here (bounded: 2 s). */
async function vmmcallRequirement(): Promise<Requirement> {
  if (!kvm.ok) return kvm;
  const k = Kvm.open({ backend: new NativeBackend() });
  try {
    if (!(BigInt(k.checkExtension(KVM_CAP.EXIT_HYPERCALL)) & (1n << 12n)))
      return { ok: false, reason: "this host's KVM lacks KVM_CAP_EXIT_HYPERCALL" };
    const vm = k.createVm();
    try {
      vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));
      const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
      const vcpu = vm.createVcpu(0);
      loadProgram(mem, vcpu, hypercallProgram(KVM_HC_MAP_GPA_RANGE, [0x8000, 1, 0]));
      const timer = setTimeout(() => vcpu.kick(), 2000);
      const exit = await vcpu.run();
      clearTimeout(timer);
      return exit.reason === 'hypercall'
        ? { ok: true, reason: '' }
        : {
            ok: false,
            reason: `a guest's VMMCALL never returns from KVM_RUN on this host (kvm_pvm runs it in its instruction emulator; exit: ${exit.reason}): the hybrid doorbell tests cover the tracker`,
          };
    } finally {
      vm.close();
    }
  } finally {
    k.close();
  }
}
const vmmcall = await vmmcallRequirement();

const hybrid = () => new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } });

async function guest(t: ExecutionContext, o: Parameters<typeof PageStateGuest.create>[0]) {
  const g = await PageStateGuest.create(o);
  t.teardown(() => g.close());
  return g;
}

/** Replays the guest's record: what its page map must be (launched RAM is private; only answered-0 requests count). */
function replay(record: readonly PageStateRecordEntry[]): PageState[] {
  const pages: PageState[] = Array.from({ length: 16 }, () => 'private');
  for (const e of record)
    if (e.op === 'map' && e.result === 0)
      for (let p = e.gpa >> 12; p < (e.gpa >> 12) + e.pages; p++) pages[p] = e.attrs & 0x10 ? 'private' : 'shared';
  return pages;
}
const trackerPages = (g: PageStateGuest) => Array.from({ length: 16 }, (_, p) => g.tracker.pageState(BigInt(p) << 12n));

const STEPS: PageStateStep[] = [
  { op: 'cpuid' },
  { op: 'msr', value: 1 },
  { op: 'map', gpa: 0x8000, pages: 4, attrs: 0 },
  { op: 'map', gpa: 0x9000, pages: 1, attrs: 0x10 },
  { op: 'map', gpa: 0xe000, pages: 4, attrs: 0 }, // past the end of RAM: -KVM_EINVAL
  { op: 'map', gpa: 0xd000, pages: 1, attrs: 0x20 }, // a reserved attrs bit: -KVM_EINVAL
  { op: 'map', gpa: 0xf000, pages: 1, attrs: 0x1 }, // a 2M hint: still one 4K page
  { op: 'sync' },
  { op: 'msr', value: 0 },
  { op: 'map', gpa: 0, pages: 16, attrs: 0x10 },
  { op: 'map', gpa: 0xc000, pages: 2, attrs: 0 },
  { op: 'msr', value: 1 },
];

hwTest(
  kvm,
  "hybrid: a real guest's MSR writes (real MSR-filter exits) and EMULATED-doorbell hypercalls drive the tracker, which matches the guest's own record",
  async (t) => {
    const backend = hybrid();
    const g = await guest(t, { backend, vcpus: [STEPS] });
    t.is(g.hypercallPath, 'doorbell');
    t.is(g.tracker.vmState, 'running', 'after a (mocked-firmware) SEV launch');
    t.is(await g.step(0), 'sync');
    const mid = g.record(0)!;
    t.deepEqual(trackerPages(g), replay(mid));
    t.true(g.tracker.migrationReady);
    await g.run();
    const record = g.record(0)!;
    t.deepEqual(
      record.map((e) => e.op),
      STEPS.map((s) => s.op),
    );
    const cpuid = record[0]!.result;
    t.is(cpuid & 0x30000, 0x30000, 'the guest sees KVM_FEATURE_HC_MAP_GPA_RANGE and KVM_FEATURE_MIGRATION_CONTROL');
    t.deepEqual(
      record.filter((e) => e.op === 'map').map((e) => e.result),
      [0, 0, -22, -22, 0, 0, 0],
    );
    t.deepEqual(
      record.filter((e) => e.op === 'msr').map((e) => e.result),
      [1, 0, 1],
      'RDMSR after each WRMSR reads the VMM value',
    );
    t.deepEqual(trackerPages(g), replay(record));
    t.is(g.tracker.generation, 2);
    t.true(g.tracker.migrationReady);
    t.is(backend.hypercallDoorbell!.emulated, 7, 'every hypercall went through the labelled doorbell');
  },
);

hwTest(
  kvm,
  'native /dev/kvm: the MSR half runs for real — the guest sets, clears and sets MSR_KVM_MIGRATION_CONTROL; readiness and generation follow',
  async (t) => {
    const g = await guest(t, {
      backend: new NativeBackend(),
      sev: false, // no SEV here: a plain VM, whose pages stay normal
      vcpus: [[{ op: 'cpuid' }, { op: 'msr', value: 1 }, { op: 'sync' }, { op: 'msr', value: 0 }, { op: 'sync' }, { op: 'msr', value: 1 }]],
    });
    const seen: [boolean, number][] = [];
    while ((await g.step(0)) === 'sync') seen.push([g.tracker.migrationReady, g.tracker.generation]);
    seen.push([g.tracker.migrationReady, g.tracker.generation]);
    t.deepEqual(seen, [
      [true, 1],
      [false, 2],
      [true, 2],
    ]);
    const rec = g.record(0)!;
    t.is(rec[0]!.result & 0x30000, 0x30000);
    t.deepEqual(
      rec.filter((e) => e.op === 'msr').map((e) => e.result),
      [1, 0, 1],
    );
    t.deepEqual([...g.tracker.runs()], [{ gpa: 0n, pages: 16, state: 'normal' }]);
  },
);

hwTest(vmmcall, 'native /dev/kvm: real VMMCALLs of KVM_HC_MAP_GPA_RANGE drive the tracker, which matches the guest record', async (t) => {
  const g = await guest(t, { backend: new NativeBackend(), sev: false, vcpus: [STEPS] });
  g.tracker.vmEvent('LAUNCH_START'); // no SEV on such a host without /dev/sev: the tracker is told the launch
  g.tracker.vmEvent('LAUNCH_FINISH');
  await g.run();
  t.deepEqual(trackerPages(g), replay(g.record(0)!));
});

hwTest(
  kvm,
  'hybrid, two real vCPUs: the kexec race of the v12 SEV live-migration patches — without generations the late share corrupts the new boot; with them it is ignored',
  async (t) => {
    const race = kexecRace();
    const results: number[][] = [];
    for (const generations of [false, true]) {
      const g = await guest(t, { backend: hybrid(), vcpus: race.vcpus, tracker: { generations } });
      await g.run(race.schedule);
      results.push(sharedPages(g.tracker));
      // The guests' own records: every request was answered 0 (the old kernel ignores the answer anyway).
      for (const i of [0, 1]) t.true(g.record(i)!.every((e) => e.result === 0 || e.op !== 'map'));
      if (generations) t.is(g.tracker.log.filter((e) => e.kind === 'stale').length, 1);
    }
    t.deepEqual(results, [[10, 12], race.newBootShared]);
  },
);

hwTest(kvm, 'hybrid, one real vCPU racing with itself: the opt-in boot IDs keep the new boot right', async (t) => {
  const race = kexecRaceOneVcpu();
  const g = await guest(t, { backend: hybrid(), vcpus: race.vcpus, tracker: { explicitGenerationIds: true } });
  await g.run();
  t.deepEqual(sharedPages(g.tracker), race.newBootShared);
});

hwTest(
  kvm,
  'hybrid: a handoff of a guest stopped in its hypercall exit completes it first; the new VMM resumes the guest, which finishes',
  async (t) => {
    const backend = hybrid();
    // A plain VM (the SEV context's own handoff is hw-test/sev-handoff.test.ts's subject: a new SEV VM
    // runs only once it has the context); the tracker is told the guest runs.
    const g = await guest(t, {
      backend,
      memfd: true,
      sev: false,
      vcpus: [
        [
          { op: 'msr', value: 1 },
          { op: 'map', gpa: 0x8000, pages: 2, attrs: 0 },
          { op: 'map', gpa: 0xa000, pages: 1, attrs: 0 },
        ],
      ],
    });
    g.tracker.vmEvent('LAUNCH_START');
    g.tracker.vmEvent('LAUNCH_FINISH');
    const vcpu = g.vcpus[0]!;
    for (;;) {
      const exit = await vcpu.run();
      t.true(g.exits.handle(vcpu, exit), exit.reason);
      if (exit.reason === 'hypercall') break;
    }
    t.is(g.tracker.pageState(0x8000n), 'converting');
    const [a, b] = backend.socketPair();
    t.teardown(() => {
      a.close();
      b.close();
    });
    const kvm2 = Kvm.open({ backend });
    t.teardown(() => kvm2.close());
    const [sent, taken] = await Promise.all([
      handOff({ vm: g.vm, vcpus: g.vcpus, memory: [g.memory], socket: a, pageStates: g.tracker }),
      takeOver({ kvm: kvm2, socket: b }),
    ]);
    t.teardown(() => {
      for (const v of taken.vcpus) v.close();
      taken.vm.close();
      for (const m of taken.memory) m.close();
    });
    t.is(sent.owner, 'target');
    const pages = taken.pageStates!;
    t.is(pages.pageState(0x8000n), 'shared');
    t.is(taken.vcpus[0]!.getRegs().rax, 0n, "RAX holds the answer, not the hypercall's number");
    // The new VMM serves the rest: the guest's next hypercall, then its end.
    const { PageStateExits } = await import('../lib/sev/page-states/page-state-exits.js');
    const exits = PageStateExits.attach(taken.vm, pages);
    const end = await exits.run(taken.vcpus[0]!);
    t.is(end.reason, 'io');
    t.is(pages.pageState(0xa000n), 'shared');
    const rec = new DataView(taken.memory[0]!.read(0x5000n, 4 + 3 * 32).buffer);
    t.is(rec.getUint32(0, true), 0x5004 + 3 * 32, 'the guest recorded all three steps, each once');
    t.is(rec.getInt32(4 + 32 + 16, true), 0, 'its first hypercall got 0');
  },
);

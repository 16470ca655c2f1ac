/**
 * The page-state tracker through the exits the mock's KVM model produces (the same code serves the
 * real KVM_EXIT_HYPERCALL and MSR exits): KVM_HC_MAP_GPA_RANGE's checks and answers, converting
 * pages, MSR_KVM_MIGRATION_CONTROL both ways, the migration gate, change events, snapshot/restore.
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../../../lib/backends/mock/mock-host.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { PageStateExits, withPageStateCpuid } from '../../../lib/sev/page-states/page-state-exits.js';
import { PageStateTracker, type PageStateSnapshot } from '../../../lib/sev/page-states/page-state-tracker.js';
import type { PageStateChange } from '../../../lib/sev/page-states/page-state-view.js';
import { decodeMapGpaRangeAttrs } from '../../../lib/sev/page-states/map-gpa-range.js';
import { MSR_KVM_MIGRATION_CONTROL } from '../../../lib/uapi/constants.js';
import { PageStateGuest } from '../../../lib/app/demo/page-state-guest.js';

const runs = (tr: PageStateTracker) => [...tr.runs()].map((r) => [Number(r.gpa >> 12n), r.pages, r.state]);

function mockVm(t: ExecutionContext) {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  vm.addMemory({ guestPhysAddr: 0x100000n, size: 0x4000, slot: 1 });
  const vcpu = vm.createVcpu(0);
  const tracker = new PageStateTracker({ ram: vm.memory.map((m) => ({ gpa: m.guestPhysAddr, size: m.size })) });
  tracker.vmEvent('LAUNCH_START');
  tracker.vmEvent('LAUNCH_FINISH');
  const exits = PageStateExits.attach(vm, tracker);
  exits.advertise(vcpu, kvm.supportedCpuid());
  return { host, kvm, vm, vcpu, tracker, exits };
}

test('KVM_HC_MAP_GPA_RANGE from the mock model: shared and private ranges, answers in RAX, bad requests answered -KVM_EINVAL without touching the pages', async (t) => {
  const { host, vcpu, tracker, exits } = mockVm(t);
  const hc = (gpa: bigint, n: bigint, attrs: bigint) => ({ op: 'vmmcall' as const, nr: 12n, args: [gpa, n, attrs] as const });
  const rax: bigint[] = [];
  const cases: [ReturnType<typeof hc>, bigint][] = [
    [hc(0x8000n, 4n, 0n), 0n], // share pages 8..11
    [hc(0x9000n, 1n, 0x10n), 0n], // page 9 private again
    [hc(0x100000n, 2n, 0x1n), 0n], // 2M hint (a hint only), shared, in slot 1
    [hc(0xf000n, 2n, 0n), -22n], // runs off the end of slot 0 into a hole
    [hc(0x8000n, 1n, 0x20n), -22n], // reserved attrs bit 5
    [hc(0x8000n, 1n, 0x3n), -22n], // page-size hint 3
    [hc(0x8000n, 1n, 0x10000n), -22n], // boot IDs are off by default: bits 31:16 are reserved
    [hc(0x200000n, 1n, 0n), -22n], // no RAM there
  ];
  for (const [op, want] of cases) {
    host.queueGuestOps(vcpu.fd, [op, { op: 'out', port: 0x500, size: 1, value: 0 }]);
    const exit = await exits.run(vcpu);
    t.is(exit.reason, 'io');
    rax.push(BigInt.asIntN(64, vcpu.getRegs().rax));
    t.is(rax[rax.length - 1], want, JSON.stringify(op.args.map(String)));
  }
  t.deepEqual(runs(tracker), [
    [0, 8, 'private'],
    [8, 1, 'shared'],
    [9, 1, 'private'],
    [10, 2, 'shared'],
    [12, 4, 'private'],
    [0x100, 2, 'shared'],
    [0x102, 2, 'private'],
  ]);
  t.is(tracker.pageState(0x8fffn), 'shared');
  t.is(tracker.pageState(0x101000n), 'shared');
  t.throws(() => tracker.pageState(0x10000n), { instanceOf: RangeError });
  t.deepEqual(
    tracker.log.map((e) => e.kind),
    ['invalid', 'invalid', 'invalid', 'invalid', 'invalid'],
  );
  t.regex(tracker.log[0]!.reason, /not inside guest RAM/);
});

test('a hypercall the VMM answered leaves its pages converting until the guest is re-entered; then they settle', async (t) => {
  const { host, vcpu, tracker, exits } = mockVm(t);
  const changes: PageStateChange[] = [];
  tracker.onChange((c) => changes.push(c));
  host.queueGuestOps(vcpu.fd, [
    { op: 'vmmcall', nr: 12n, args: [0xa000n, 2n, 0n] },
    { op: 'out', port: 0x500, size: 1, value: 0 },
  ]);
  const exit = await vcpu.run();
  t.true(exits.handle(vcpu, exit));
  t.is(tracker.pageState(0xa000n), 'converting');
  t.is(tracker.pageState(0xb000n), 'converting');
  t.is(tracker.pageState(0xc000n), 'private');
  t.is((await exits.run(vcpu)).reason, 'io');
  t.is(tracker.pageState(0xa000n), 'shared');
  t.deepEqual(
    changes.map((c) => [Number(c.gpa), c.pages, c.from, c.to, c.cause, c.generation]),
    [
      [0xa000, 2, 'private', 'converting', 'hypercall', 1],
      [0xa000, 2, 'converting', 'shared', 'hypercall', 1],
    ],
  );
});

test('MSR_KVM_MIGRATION_CONTROL through the MSR filter: set, clear, set again; reserved bits #GP; the generation advances at each clear', async (t) => {
  const { host, vcpu, tracker, exits } = mockVm(t);
  const w = (value: bigint) => ({ op: 'wrmsr' as const, index: MSR_KVM_MIGRATION_CONTROL, value });
  const done = { op: 'out' as const, port: 0x500, size: 1 as const, value: 0 };
  const seen: [boolean, number][] = [];
  for (const v of [1n, 0n, 0n, 1n]) {
    host.queueGuestOps(vcpu.fd, [w(v), { op: 'rdmsr', index: MSR_KVM_MIGRATION_CONTROL }, done]);
    t.is((await exits.run(vcpu)).reason, 'io');
    t.is(vcpu.getRegs().rax, v, 'RDMSR reads back what was written');
    seen.push([tracker.migrationReady, tracker.generation]);
  }
  t.deepEqual(seen, [
    [true, 1],
    [false, 2],
    [false, 2],
    [true, 2],
  ]);
  host.queueGuestOps(vcpu.fd, [w(2n), done]);
  await exits.run(vcpu);
  t.is(vcpu.getVcpuEvents().exception.nr, 13, '#GP for bit 1');
  t.true(tracker.migrationReady);
});

test('SEND_START is refused with the reason while the guest is not migration-ready, unless the caller overrides it', (t) => {
  const tr = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x4000 }] });
  tr.vmEvent('LAUNCH_START');
  tr.vmEvent('LAUNCH_FINISH');
  t.deepEqual(tr.migratable(), { ok: false, reason: 'the guest has not set KVM_MIGRATION_READY (MSR_KVM_MIGRATION_CONTROL)' });
  const e = t.throws(() => tr.vmEvent('SEND_START'));
  t.is((e as { code?: string }).code, 'ERR_KVM_SEV_NOT_MIGRATABLE');
  t.regex((e as { hint?: string }).hint ?? '', /ignoreMigrationControl/);
  t.is(tr.vmState, 'running');
  t.is(tr.log.at(-1)?.kind, 'refused');
  t.is(tr.vmEvent('SEND_START', { ignoreMigrationControl: true }), 'sending');
  t.is(tr.vmEvent('SEND_CANCEL'), 'running');
  t.true(tr.writeMigrationControl(0, 1n));
  t.deepEqual(tr.migratable(), { ok: true });
  t.is(tr.vmEvent('SEND_START'), 'sending');
  tr.writeMigrationControl(0, 0n); // the guest reboots during the send: migration must not finish on stale states
  t.false(tr.migrationReady);
  t.deepEqual(tr.migratable(), { ok: false, reason: "the VM is 'sending', not running" });
});

test('hypercalls are refused (-KVM_ENOSYS) while no SEV guest runs: before LAUNCH_FINISH and after SEND_FINISH', (t) => {
  const tr = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x4000 }] });
  t.is(tr.mapGpaRange(0, 0n, 1n, false).ret, -1000n);
  tr.vmEvent('LAUNCH_START');
  t.is(tr.mapGpaRange(0, 0n, 1n, false).ret, -1000n);
  tr.vmEvent('LAUNCH_FINISH');
  t.is(tr.mapGpaRange(0, 0n, 1n, false).ret, 0n);
  tr.vmEvent('SEND_START', { ignoreMigrationControl: true });
  t.is(tr.mapGpaRange(0, 0x1000n, 1n, false).ret, 0n, 'the guest runs while it is sent');
  tr.vmEvent('SEND_FINISH');
  t.is(tr.mapGpaRange(0, 0n, 1n, true).ret, -1000n);
  // Each accepted call settled the vCPU's previous one; the refused one changed nothing.
  t.deepEqual(runs(tr), [
    [0, 2, 'shared'],
    [2, 2, 'private'],
  ]);
});

test('a snapshot is JSON and restores the same pages, VM state, readiness, generations and pending conversions', (t) => {
  const tr = new PageStateTracker({
    ram: [
      { gpa: 0n, size: 0x10000 },
      { gpa: 0x100000n, size: 0x2000 },
    ],
    explicitGenerationIds: true,
  });
  tr.vmEvent('LAUNCH_START');
  tr.launchUpdate(0x1000n, 0x1000);
  tr.vmEvent('LAUNCH_FINISH');
  tr.addVcpu(0);
  tr.addVcpu(1);
  tr.writeMigrationControl(0, 1n);
  tr.mapGpaRange(0, 0x4000n, 3n, false, 7);
  tr.settle(0);
  tr.mapGpaRange(1, 0x100000n, 1n, false, 7); // pending
  const json = JSON.stringify(tr.snapshot());
  const parse = () => JSON.parse(json) as PageStateSnapshot;
  const back = PageStateTracker.fromSnapshot(parse());
  t.deepEqual([...back.runs()], [...tr.runs()]);
  t.deepEqual(back.snapshot(), tr.snapshot());
  t.is(back.vmState, 'running');
  t.true(back.migrationReady);
  t.true(back.explicitGenerationIds);
  back.settle(1);
  t.is(back.pageState(0x100000n), 'shared', 'the pending conversion settles after the restore');
  // A restore into an existing tracker reports every run as a 'restore' change.
  const other = new PageStateTracker({
    ram: [
      { gpa: 0n, size: 0x10000 },
      { gpa: 0x100000n, size: 0x2000 },
    ],
  });
  const seen: PageStateChange[] = [];
  other.onChange((c) => seen.push(c));
  other.restore(parse());
  t.deepEqual(
    seen.map((c) => [c.cause, c.to]),
    [...tr.runs()].map((r) => ['restore', r.state]),
  );
  // A migration's destination keeps its own VM state: it is receiving, the source was sending.
  const dest = new PageStateTracker({
    ram: [
      { gpa: 0n, size: 0x10000 },
      { gpa: 0x100000n, size: 0x2000 },
    ],
  });
  dest.vmEvent('RECEIVE_START');
  dest.restore(parse(), { keepVmState: true });
  t.is(dest.vmState, 'receiving');
  t.true(dest.migrationReady, 'the MSR value travels with the pages');
  t.is(dest.pageState(0x4000n), 'shared');
  dest.vmEvent('RECEIVE_FINISH');
  t.is(dest.vmState, 'running');
  t.is(dest.pageState(0x4000n), 'shared', 'RECEIVE_FINISH keeps the shared pages');
  // Bad snapshots are typed errors.
  const bad = (f: (s: { version: number; runs: { state: string }[] }) => void) => {
    const s = parse();
    f(s as unknown as { version: number; runs: { state: string }[] });
    f(s);
    return t.throws(() => PageStateTracker.fromSnapshot(s));
  };
  t.is((bad((s) => (s.version = 9)) as { code?: string }).code, 'ERR_KVM_SEV_PAGE_STATES');
  t.regex(bad((s) => void s.runs.pop())!.message, /do not cover all of guest RAM/);
  t.regex(bad((s) => (s.runs[0]!.state = 'secret'))!.message, /unknown page state/);
  const small = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x1000 }] });
  t.regex(t.throws(() => small.restore(parse()))!.message, /is not this guest's/);
});

test("attrs: bits 3:0 a page-size hint (4K, 2M, 1G), bit 4 encrypted; with boot IDs, bits 31:16 are the guest's boot", (t) => {
  t.deepEqual(decodeMapGpaRangeAttrs(0x10n, false), { encrypted: true, pageSize: '4K', bootId: 0 });
  t.deepEqual(decodeMapGpaRangeAttrs(0x2n, false), { encrypted: false, pageSize: '1G', bootId: 0 });
  t.deepEqual(decodeMapGpaRangeAttrs(0x12_0011n, true), { encrypted: true, pageSize: '2M', bootId: 0x12 });
  t.true('error' in decodeMapGpaRangeAttrs(0x1_0000_0000n, true));
  t.true('error' in decodeMapGpaRangeAttrs(0x40n, true));
});

test('CPUID: leaf 0x40000001 EAX gets KVM_FEATURE_HC_MAP_GPA_RANGE (16) and KVM_FEATURE_MIGRATION_CONTROL (17); the KVM leaves are added if missing', (t) => {
  const out = withPageStateCpuid([{ function: 0, index: 0, flags: 0, eax: 0xd, ebx: 0, ecx: 0, edx: 0 } as never]);
  const sig = out.find((e) => e.function === 0x40000000)!;
  const b = Buffer.alloc(12);
  b.writeUInt32LE(sig.ebx, 0);
  b.writeUInt32LE(sig.ecx, 4);
  b.writeUInt32LE(sig.edx, 8);
  t.is(b.toString('latin1').replace(/\0+$/, ''), 'KVMKVMKVM');
  t.is(out.find((e) => e.function === 0x40000001)!.eax, 0x30000);
  const again = withPageStateCpuid(out.map((e) => (e.function === 0x40000001 ? { ...e, eax: 0x1 } : e)));
  t.is(again.find((e) => e.function === 0x40000001)!.eax, 0x30001, 'the other feature bits stay');
});

test("the page-state guest on the mock: a real SEV launch (mock firmware), its steps as the model's instructions, the tracker follows", async (t) => {
  const g = await PageStateGuest.create({
    backend: new MockHost(),
    vcpus: [
      [
        { op: 'msr', value: 1 },
        { op: 'map', gpa: 0x8000, pages: 8, attrs: 0 },
        { op: 'sync' },
        { op: 'map', gpa: 0xc000, pages: 2, attrs: 0x10 },
      ],
    ],
  });
  t.teardown(() => g.close());
  t.is(g.hypercallPath, 'model');
  t.is(g.tracker.vmState, 'running');
  t.is(await g.step(0), 'sync');
  t.deepEqual(runs(g.tracker), [
    [0, 8, 'private'],
    [8, 8, 'shared'],
  ]);
  await g.run();
  t.deepEqual(runs(g.tracker), [
    [0, 8, 'private'],
    [8, 4, 'shared'],
    [12, 2, 'private'],
    [14, 2, 'shared'],
  ]);
  t.true(g.tracker.migrationReady);
  t.deepEqual(
    g.changes.filter((c) => c.cause !== 'hypercall').map((c) => [c.cause, Number(c.gpa), c.pages, c.to]),
    [
      ['launch', 0x1000, 5, 'private'],
      // LAUNCH_FINISH changes only the pages launch data left normal.
      ['launch-finish', 0, 1, 'private'],
      ['launch-finish', 0x6000, 10, 'private'],
    ],
  );
});

test('a vCPU going offline clears the MSR without a reboot: the other vCPUs still run that boot, and their requests count', (t) => {
  const tr = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x10000 }] });
  tr.vmEvent('LAUNCH_START');
  tr.vmEvent('LAUNCH_FINISH');
  for (const v of [0, 1, 2]) tr.addVcpu(v);
  tr.writeMigrationControl(0, 1n);
  tr.writeMigrationControl(2, 0n); // kvm_guest_cpu_offline() on CPU 2 only
  t.false(tr.migrationReady, 'migration is blocked, as the kernel intends');
  t.is(tr.generation, 2);
  t.is(tr.mapGpaRange(0, 0x8000n, 2n, false).ret, 0n);
  tr.settle(0);
  t.is(tr.mapGpaRange(1, 0xa000n, 1n, false).ret, 0n);
  tr.settle(1);
  t.deepEqual(runs(tr), [
    [0, 8, 'private'],
    [8, 3, 'shared'],
    [11, 5, 'private'],
  ]);
  t.is(tr.log.filter((e) => e.kind === 'stale').length, 0);
  // A real kexec later: the reset by vCPU 0 is the new boot's; vCPU 1's late share of a reset page is ignored.
  tr.writeMigrationControl(0, 0n);
  tr.mapGpaRange(0, 0n, 16n, true);
  tr.settle(0);
  tr.mapGpaRange(1, 0xb000n, 1n, false);
  tr.settle(1);
  t.is(tr.pageState(0xb000n), 'private');
  t.is(tr.log.filter((e) => e.kind === 'stale').length, 1);
});

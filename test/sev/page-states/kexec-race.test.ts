/**
 * The kexec race of the v12 SEV live-migration patches (Steve Rutherford, "Re: [PATCH v12 13/13]
 * x86/kvm: Add kexec support for SEV Live Migration", LKML April 2021), reproduced with the page-state
 * guest on the mock's KVM model (the hardware version is in hw-test/page-states.test.ts): without boot
 * generations the late request from the old boot leaves a page shared that the new boot never shared;
 * with them it is ignored, with the reason logged.
 */
import test from 'ava';
import { MockHost } from '../../../lib/backends/mock/mock-host.js';
import { PageStateGuest } from '../../../lib/app/demo/page-state-guest.js';
import { kexecRace, kexecRaceOneVcpu, sharedPages } from '../../helpers/kexec-race.js';

test('two vCPUs: without generations the stale share corrupts the new boot (page 10 shared); with them it is ignored and logged', async (t) => {
  const race = kexecRace();
  const off = await PageStateGuest.create({ backend: new MockHost(), vcpus: race.vcpus, tracker: { generations: false } });
  t.teardown(() => off.close());
  await off.run(race.schedule);
  t.deepEqual(sharedPages(off.tracker), [10, 12], 'reproduced: the old boot wrote into the new boot');

  const on = await PageStateGuest.create({ backend: new MockHost(), vcpus: race.vcpus });
  t.teardown(() => on.close());
  await on.run(race.schedule);
  t.deepEqual(sharedPages(on.tracker), race.newBootShared);
  t.is(on.tracker.generation, 2);
  t.true(on.tracker.migrationReady);
  const stale = on.tracker.log.filter((e) => e.kind === 'stale');
  t.is(stale.length, 1);
  t.is(stale[0]!.vcpu, 1);
  t.is(stale[0]!.gpa, 0xa000n);
  t.is(stale[0]!.generation, 1);
  t.regex(stale[0]!.reason, /vCPU 1 has not cleared MSR_KVM_MIGRATION_CONTROL since generation 1 ended/);
  // The new boot's changes carry its generation.
  t.true(on.changes.filter((c) => c.cause === 'hypercall' && c.gpa === 0xc000n).every((c) => c.generation === 2));
});

test('one vCPU racing with itself: only explicit boot IDs (the opt-in attrs extension) tell the late request apart', async (t) => {
  const race = kexecRaceOneVcpu();
  const results: Record<string, number[]> = {};
  for (const [name, tracker] of [
    ['none', { generations: false, explicitGenerationIds: true }],
    ['msr only', { explicitGenerationIds: true, ignoreIds: true }],
    ['boot ids', { explicitGenerationIds: true }],
  ] as const) {
    const steps =
      'ignoreIds' in tracker ? race.vcpus.map((v) => v.map((s) => (s.op === 'map' ? { ...s, attrs: s.attrs & 0xffff } : s))) : race.vcpus;
    const opts = {
      generations: 'generations' in tracker ? tracker.generations : true,
      explicitGenerationIds: tracker.explicitGenerationIds,
    };
    const g = await PageStateGuest.create({ backend: new MockHost(), vcpus: steps, tracker: opts });
    t.teardown(() => g.close());
    await g.run();
    results[name] = sharedPages(g.tracker);
    if (name === 'boot ids') {
      t.regex(g.tracker.log.find((e) => e.kind === 'stale')?.reason ?? '', /boot ID 1 belongs to a boot before generation 2/);
      t.is(g.tracker.generation, 2);
    }
  }
  t.deepEqual(results, { none: [10, 12], 'msr only': [10, 12], 'boot ids': race.newBootShared });
});

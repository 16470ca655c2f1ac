/**
 * The VMM handoff carries the page-state table, and completes a vCPU's pending hypercall exit with a
 * KVM_RUN before saving it (Documentation/virt/kvm/api.rst, KVM_EXIT_HYPERCALL: a vCPU saved in the
 * middle of the exit would re-execute the hypercall once restored). On the mock's KVM model, both
 * VMMs in this process, over a socket pair.
 */
import test from 'ava';
import { MockHost } from '../../lib/backends/mock/mock-host.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { handOff, takeOver } from '../../lib/migration/handoff.js';
import { PageStateGuest } from '../../lib/app/demo/page-state-guest.js';

test('a pending KVM_HC_MAP_GPA_RANGE is completed before the save; the new VMM gets settled page states, readiness and generation', async (t) => {
  const host = new MockHost();
  const g = await PageStateGuest.create({
    backend: host,
    memfd: true,
    vcpus: [
      [
        { op: 'msr', value: 1 },
        { op: 'map', gpa: 0x8000, pages: 2, attrs: 0 },
      ],
    ],
  });
  t.teardown(() => g.close());
  const vcpu = g.vcpus[0]!;
  // Serve exits by hand up to the hypercall, and stop there: answered, not yet completed.
  for (;;) {
    const exit = await vcpu.run();
    t.true(g.exits.handle(vcpu, exit), exit.reason);
    if (exit.reason === 'hypercall') break;
  }
  t.is(g.tracker.pageState(0x8000n), 'converting');
  t.is(vcpu.getRegs().rax, 12n, 'the guest has not seen its answer yet');

  const [a, b] = host.socketPair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  using kvm2 = Kvm.open({ backend: host });
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
  t.truthy(pages);
  t.is(pages.pageState(0x8000n), 'shared');
  t.is(pages.pageState(0x9000n), 'shared');
  t.is(pages.pageState(0xa000n), 'private');
  t.true(pages.migrationReady);
  t.is(pages.vmState, 'running');
  t.deepEqual([...pages.runs()], [...g.tracker.runs()]);
  t.is(taken.vcpus[0]!.getRegs().rax, 0n, "the restored vCPU holds the hypercall's answer: it will not execute it again");
});

test('without page states the handoff is as before (no pageStates on the new side)', async (t) => {
  const host = new MockHost();
  using kvm = Kvm.open({ backend: host });
  const vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: true });
  const vcpus = [vm.createVcpu(0)];
  const [a, b] = host.socketPair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  const [, taken] = await Promise.all([handOff({ vm, vcpus, memory: [mem], socket: a }), takeOver({ kvm, socket: b })]);
  t.teardown(() => {
    for (const v of taken.vcpus) v.close();
    taken.vm.close();
    for (const m of taken.memory) m.close();
    for (const v of vcpus) v.close();
    mem.close();
  });
  t.is(taken.pageStates, undefined);
});

/**
 * irqfd with a resamplefd on the mock kernel, driven by a queued guest that takes the PIC's
 * interrupt and EOIs it (virt/kvm/eventfd.c: irqfd_inject(), irqfd_resampler_ack(),
 * irqfd_resampler_shutdown(); arch/x86/kvm/i8259.c: kvm_pic_read_irq(), pic_clear_isr()): the same
 * protocol hw-test/vmm-features.test.ts runs with a real-mode guest on the real KVM.
 */
import test, { type ExecutionContext } from 'ava';
import { Kvm } from '../../../../lib/kvm/kvm.js';
import { MockHost, type GuestOp } from '../../../../lib/backends/mock/index.js';
import { KVM_IRQCHIP } from '../../../../lib/uapi/vmm-constants.js';

const ACK = 0x503;
const DONE = 0x500;

function setup(t: ExecutionContext) {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  vm.createIrqchip();
  vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  // What the guest's ICWs leave (the mock does not model ICW1-4): vectors from 0x20.
  const m = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
  if (m.chip_id !== 2) vm.setIrqchip({ chip_id: 0, pic: { ...m.pic, irq_base: 0x20 } });
  const pic = () => {
    const p = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    if (p.chip_id === 2) throw new Error('not a PIC');
    return p.pic;
  };
  /** Queues `ops` and runs to the next exit, which must be an OUT to `port`. */
  const runTo = async (ops: GuestOp[], port: number) => {
    host.queueGuestOps(vcpu.fd, ops);
    const exit = await vcpu.run();
    t.true(exit.reason === 'io' && exit.port === port, `expected an OUT to ${port}, got ${exit.reason}`);
  };
  return { host, vm, vcpu, pic, runTo };
}

const out = (port: number, value: number): GuestOp => ({ op: 'out', port, size: 1, value });

test('the EOI of a level-triggered line lowers it and signals the resamplefd; the VMM raises it again only while it has work', async (t) => {
  const { host, vm, vcpu, pic, runTo } = setup(t);
  // The guest's driver: IRQ 5 level-triggered (ELCR) and the only one unmasked (OCW1).
  await runTo([out(0x4d0, 0x20), out(0x21, 0xdf), out(DONE, 0)], DONE);
  t.like(pic(), { elcr: 0x20, imr: 0xdf });
  using irq = vm.eventfd();
  using resample = vm.eventfd();
  vm.irqfd(irq, 5, { resample });
  let work = 3;
  let resamples = 0;
  irq.signal();
  for (let round = 1; round <= 3; round++) {
    t.is(pic().irr & 0x20, 0x20, `round ${round}: the line is up`);
    // The guest takes the interrupt and acknowledges the device (an exit to the VMM, which does one unit of work).
    await runTo([{ op: 'interrupt' }, out(ACK, round)], ACK);
    t.like(pic(), { isr: 0x20 });
    t.is(pic().irr & 0x20, 0x20, 'level-triggered: IRR follows the line, which is still up');
    work--;
    // Its EOI: KVM lowers the line and signals the resamplefd, with no exit.
    await runTo([out(0x20, 0x20), out(DONE, round)], DONE);
    t.like(pic(), { isr: 0 });
    t.is(pic().irr & 0x20, 0, 'the resampler lowered the line');
    t.is(await resample.wait(), 1n);
    resamples++;
    if (work > 0) irq.signal();
  }
  t.is(resamples, 3);
  t.is(pic().irr, 0, 'no work left: the VMM left the line down');
  host.queueGuestOps(vcpu.fd, [{ op: 'interrupt' }]);
  t.throws(() => vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_GUEST_OP', message: /presents no interrupt/ });
});

test('an edge-triggered line: the EOI still signals the resamplefd; deassigning the last resample irqfd lowers its line', async (t) => {
  const { host, vm, vcpu, pic, runTo } = setup(t);
  await runTo([out(0x21, 0xdf), out(DONE, 0)], DONE);
  using irq = vm.eventfd();
  using resample = vm.eventfd();
  vm.irqfd(irq, 5, { resample });
  irq.signal();
  await runTo([{ op: 'interrupt' }, out(0x20, 0x65), out(DONE, 1)], DONE); // specific EOI of IRQ 5
  t.is(resample.read(), 1n);
  t.like(pic(), { isr: 0, irr: 0 });
  irq.signal();
  t.is(pic().irr, 0x20);
  t.is(pic().last_irr & 0x20, 0x20, 'the line is held up by the resampler');
  vm.irqfdDeassign(irq, 5);
  t.is(pic().last_irr & 0x20, 0, 'irqfd_resampler_shutdown() lowered it');
  // After the deassign an EOI notifies nobody; a word write to the PIC is dropped, with no exit.
  await runTo([{ op: 'interrupt' }, out(0x20, 0x20), { op: 'out', port: 0x21, size: 2, value: 0 }, out(DONE, 2)], DONE);
  t.is(pic().imr, 0xdf);
  t.is(resample.read(), 0n, 'deassigned: no resample');
  host.queueGuestOps(vcpu.fd, [out(0x20, 0x11)]);
  t.throws(() => vcpu.runSync(), { code: 'ERR_KVM_SEV_MOCK_GUEST_OP', message: /ICW1/ });
});

/**
 * A 4 GiB guest on the real /dev/kvm reaches all its RAM. RAM in one slot from 0 to 4 GiB put the
 * local APIC's page, 0xfee00000, under RAM; the handoff benchmark's guest then took a KVM_EXIT_MMIO
 * there (issue 13): KVM treats that page as MMIO (arch/x86/kvm/x86.c: vcpu_is_mmio_gpa()).
 * vm.addRam() leaves the hole below 4 GiB a PC has and puts the rest at 4 GiB. The memory is memfd-backed
 * and mostly untouched (one write per 2 MiB), so the test costs little.
 */
import { PAGE_TOUCHER, pageToucherProgram } from '../lib/app/guest/page-toucher.js';
import { setupLongMode } from '../lib/app/guest/setup.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { Kvm } from '../lib/kvm/kvm.js';
import { ramEnd } from '../lib/kvm/ram-layout.js';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const GIB = 2 ** 30;

hwTest(kvmDevice(), 'a 4 GiB guest from vm.addRam() writes through all its RAM, to 5 GiB, with no MMIO exit', async (t) => {
  const kvm = Kvm.open({ backend: new NativeBackend() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const ram = vm.addRam({ size: 4 * GIB, memfd: 'ram-layout-test' });
  const end = ramEnd(ram);
  const vcpu = vm.createVcpu(0);
  ram[0]!.write(BigInt(PAGE_TOUCHER.ORIGIN), pageToucherProgram({ ranges: ram, stride: 2 << 20 }));
  setupLongMode(vcpu, { entry: PAGE_TOUCHER.ORIGIN, identityMapGiB: Number(end / BigInt(GIB)) });
  ram[0]!.writeU32(BigInt(PAGE_TOUCHER.MAILBOX), 1);
  const exits: string[] = [];
  for (let i = 0; i < 10; i++) {
    const e = await vcpu.run();
    if (e.reason === 'io' && e.port === PAGE_TOUCHER.DONE) break;
    exits.push(e.reason === 'mmio' ? `mmio at 0x${e.physAddr.toString(16)}` : e.reason === 'io' ? `io ${e.port}` : e.reason);
  }
  t.deepEqual(exits, [`io ${PAGE_TOUCHER.PORT}`], 'one count, then the pass, with no other exit');
  t.is(vcpu.getRegs().rbx, end, 'the last loop ran to the end of the RAM');
  t.is(end, 5n * BigInt(GIB), 'the RAM above the hole ends at 5 GiB');
  t.is(ram[0]!.readU32(BigInt(PAGE_TOUCHER.MAILBOX)), 0, 'the guest took the mailbox');
});

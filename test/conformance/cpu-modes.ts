/**
 * The vCPU mode helpers on every backend: KVM takes the long-mode and protected-mode state
 * setupLongMode()/setupProtectedMode() give it and reads it back unchanged, the tables they write
 * are in guest memory, and KVM_SET_SREGS refuses the same inconsistent states with EINVAL
 * everywhere (arch/x86/kvm/x86.c: kvm_is_valid_sregs()), keeping the state it had.
 */
import type { ExecutionContext } from 'ava';
import type { Backend } from '../../lib/backend/contract.js';
import type { KvmError } from '../../lib/backend/errors.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { KvmSregs } from '../../lib/kvm/vcpu.js';
import { FLAT_SEGMENTS, NO_LDT, tssSegment } from '../../lib/app/guest/descriptors.js';
import { setupLongMode, setupProtectedMode } from '../../lib/app/guest/setup.js';
import { hwTest, type Requirement } from '../helpers/hw.js';

export interface KvmTarget {
  name: string;
  req: Requirement;
  make(): Backend;
}

/** A VM with 128 KiB at 0 and one vCPU; closed when the test ends. */
function vcpuOn(t: ExecutionContext, b: Backend) {
  const kvm = Kvm.open({ backend: b });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x20000 });
  return { kvm, vm, mem, vcpu: vm.createVcpu(0) };
}

/** Inconsistent variations of a valid long-mode state, each of which KVM_SET_SREGS refuses. */
export const INVALID_SREGS: [string, (s: KvmSregs) => KvmSregs][] = [
  ['EFER.LME and CR0.PG without CR4.PAE', (s) => ({ ...s, cr4: s.cr4 & ~0x20n })],
  ['EFER.LME and CR0.PG without EFER.LMA', (s) => ({ ...s, efer: 0x100n })],
  ['EFER.LMA without CR0.PG', (s) => ({ ...s, cr0: s.cr0 & ~(1n << 31n) })],
  ['CS.L outside long mode', (s) => ({ ...s, cr0: 0x33n, cr4: 0n, efer: 0n })],
  ['CR0.PG without CR0.PE', (s) => ({ ...s, cr0: s.cr0 & ~1n })],
  ['CR0.NW without CR0.CD', (s) => ({ ...s, cr0: s.cr0 | (1n << 29n) })],
  ['CR0 bit 32', (s) => ({ ...s, cr0: s.cr0 | (1n << 32n) })],
  ['CR4 bit 15 (reserved)', (s) => ({ ...s, cr4: s.cr4 | (1n << 15n) })],
  ['CR4.VMXE on AMD (no VMX in CPUID)', (s) => ({ ...s, cr4: s.cr4 | (1n << 13n) })],
  ['CR3 bit 51 (beyond a 48-bit MAXPHYADDR)', (s) => ({ ...s, cr3: s.cr3 | (1n << 51n) })],
];

export function cpuModesSuite(target: KvmTarget): void {
  const title = (s: string) => `${target.name}: ${s}`;

  hwTest(
    target.req,
    title('setupLongMode(): KVM takes 64-bit CS, flat data, a 64-bit TSS, CR0/CR3/CR4/EFER and the entry registers'),
    (t) => {
      const { vcpu, mem } = vcpuOn(t, target.make());
      const layout = setupLongMode(vcpu, { entry: 0x1000, stack: 0x9000, handlers: { 6: 0x1100 } });
      const s = vcpu.getSregs();
      t.like(s, {
        cs: FLAT_SEGMENTS.code64,
        ds: FLAT_SEGMENTS.data,
        ss: FLAT_SEGMENTS.data,
        gs: FLAT_SEGMENTS.data,
        tr: tssSegment(0x10100n),
        gdt: { base: 0x10000n, limit: 47 },
        idt: { base: 0x11000n, limit: 4095 },
        cr0: 0x80010033n,
        cr3: 0x12000n,
        cr4: 0x620n,
        efer: 0x500n,
      });
      t.like(s.ldt, { selector: 0, unusable: 1 });
      t.like(vcpu.getRegs(), { rip: 0x1000n, rsp: 0x9000n, rflags: 2n });
      t.is(layout.pageTables, 0x12000n);
      t.is(mem.readU64(0x10008n), 0x00af9b000000ffffn, 'GDT[1]: the 64-bit code segment CS holds');
      t.is(mem.readU64(0x12000n), 0x13003n, 'PML4[0] -> PDPT');
      t.is(mem.readU64(0x13000n + 8n * 3n), 0x17003n, 'PDPT[3] -> the fourth page directory');
      t.is(mem.readU64(0x17000n + 8n * 511n), 0xffe00083n, 'the last 2 MiB page below 4 GiB');
      t.truthy(
        vcpu.cpuid?.some((e) => e.function === 0x80000001 && (e.edx >>> 29) & 1),
        'the vCPU has a CPUID with LM',
      );
    },
  );

  hwTest(target.req, title('setupProtectedMode(): KVM takes 32-bit CS, flat data, a 32-bit TSS and CR0.PE, no paging, EFER 0'), (t) => {
    const { vcpu, mem } = vcpuOn(t, target.make());
    setupProtectedMode(vcpu, { entry: 0x1000 });
    t.like(vcpu.getSregs(), {
      cs: FLAT_SEGMENTS.code32,
      ds: FLAT_SEGMENTS.data,
      es: FLAT_SEGMENTS.data,
      tr: tssSegment(0x10100n),
      ldt: { ...NO_LDT },
      gdt: { base: 0x10000n, limit: 39 },
      idt: { base: 0x11000n, limit: 2047 },
      cr0: 0x33n,
      cr3: 0n,
      cr4: 0x600n,
      efer: 0n,
    });
    t.is(mem.readU64(0x10018n), 0x00cf9b000000ffffn, 'GDT[3]: the 32-bit code segment');
    t.is(mem.readU64(0x10020n), 0x00008b0101000067n, 'GDT[4]: the busy TSS at 0x10100');
  });

  hwTest(target.req, title('KVM_SET_SREGS refuses inconsistent modes with EINVAL and keeps the state it had'), (t) => {
    const { vcpu } = vcpuOn(t, target.make());
    setupLongMode(vcpu, { entry: 0x1000 });
    const good = vcpu.getSregs();
    for (const [what, change] of INVALID_SREGS) {
      const e = t.throws(() => vcpu.setSregs(change(good)), undefined, what) as KvmError;
      t.like(e, { code: 'EINVAL', request: 'KVM_SET_SREGS' }, what);
      t.deepEqual(vcpu.getSregs(), good, what);
    }
    // EFER's own reserved bits are checked on a guest's WRMSR, not here.
    vcpu.setSregs({ ...good, efer: good.efer | 2n });
    t.is(vcpu.getSregs().efer, 0x502n);
  });
}

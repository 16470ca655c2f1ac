/**
 * Puts a vCPU in flat real mode, 32-bit protected mode or 64-bit long mode at an entry point, the
 * way a VMM does before the first KVM_RUN: the descriptor tables and page tables the mode needs are
 * written into guest memory, and KVM_SET_SREGS gets segment registers whose cached descriptors match
 * those tables, the control registers and EFER (as KVM's selftests do in
 * tools/testing/selftests/kvm/lib/x86/processor.c: vcpu_init_sregs(); KVM checks the combination in
 * arch/x86/kvm/x86.c: kvm_is_valid_sregs()).
 */
import { invalidArgValue, outOfRange } from '../../uapi/errors.js';
import type { GuestMemory } from '../../kvm/guest-memory.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import {
  FLAT_SEGMENTS,
  NO_LDT,
  SELECTORS,
  interruptGate32,
  interruptGate64,
  segmentDescriptor,
  systemDescriptor64,
  tssSegment,
  type Segment,
} from './descriptors.js';
import { identityMap32, identityMap4Level } from './page-tables.js';
import type { GuestProgram } from './programs.js';

export function setupRealMode(vcpu: Vcpu, entry: number, stack = 0x8000): void {
  const s = vcpu.getSregs();
  for (const seg of [s.cs, s.ds, s.es, s.fs, s.gs, s.ss]) {
    seg.base = 0n;
    seg.selector = 0;
  }
  vcpu.setSregs(s);
  vcpu.setRegs({ ...vcpu.getRegs(), rip: BigInt(entry), rsp: BigInt(stack), rflags: 2n });
}

/** Copies the program into guest memory and points the vCPU at it. */
export function loadProgram(mem: GuestMemory, vcpu: Vcpu, program: GuestProgram): void {
  mem.write(BigInt(program.origin), program.code);
  setupRealMode(vcpu, program.origin);
}

/** CR0, CR4 and EFER bits (Intel SDM vol. 3, section 2.5; arch/x86/include/asm/processor-flags.h). */
export const CR0 = Object.freeze({ PE: 1n << 0n, MP: 1n << 1n, ET: 1n << 4n, NE: 1n << 5n, WP: 1n << 16n, PG: 1n << 31n });
export const CR4 = Object.freeze({ PSE: 1n << 4n, PAE: 1n << 5n, OSFXSR: 1n << 9n, OSXMMEXCPT: 1n << 10n });
export const EFER = Object.freeze({ LME: 1n << 8n, LMA: 1n << 10n });

export interface ModeSetupOptions {
  /** Guest-physical (= virtual) address of the first instruction. */
  entry: number | bigint;
  /** Initial ESP/RSP (default 0x8000). */
  stack?: number | bigint;
  /**
   * A 4 KiB-aligned guest-physical address in the VM's memory for the GDT and TSS (first page), the
   * IDT (second page) and the page tables (from the third page). Default 0x10000.
   */
  tables?: number | bigint;
  /** Interrupt and exception handlers by vector: interrupt gates in the IDT, to code at these addresses. */
  handlers?: Readonly<Record<number, number | bigint>>;
}

export interface ProtectedModeOptions extends ModeSetupOptions {
  /** Turn paging on, with an identity map of all 4 GiB in 4 MiB pages (CR4.PSE). Default false. */
  paging?: boolean;
}

export interface LongModeOptions extends ModeSetupOptions {
  /** GiB identity-mapped from address 0 in 2 MiB pages, 1 to 512. Default 4 (the LAPIC and IOAPIC are below 4 GiB). */
  identityMapGiB?: number;
}

/** Where a setup helper put things in guest memory. */
export interface ModeLayout {
  gdt: bigint;
  gdtLimit: number;
  tss: bigint;
  idt: bigint;
  idtLimit: number;
  /** CR3: the PML4, or the 32-bit page directory; undefined without paging. */
  pageTables: bigint | undefined;
  /** The first byte after everything written. */
  end: bigint;
  selectors: typeof SELECTORS;
}

const DEFAULT_TABLES = 0x10000n;
const TSS_OFFSET = 0x100n;

/**
 * 32-bit protected mode: flat 4 GiB code (selector 0x18) and data (0x10) segments, a TSS in TR,
 * CR0.PE (and with `paging`, CR0.PG and an identity-mapped page directory), EFLAGS with interrupts off.
 */
export function setupProtectedMode(vcpu: Vcpu, options: ProtectedModeOptions): ModeLayout {
  const { tables, mem } = tablesIn(vcpu, options.tables, options.paging ? 0x3000 : 0x2000);
  const layout = writeTables(mem, tables, 32, options.handlers);
  let cr3 = 0n;
  if (options.paging) {
    const pd = identityMap32(tables + 0x2000n);
    mem.write(pd.root, pd.bytes);
    cr3 = pd.root;
    layout.pageTables = pd.root;
    layout.end = pd.root + BigInt(pd.bytes.length);
  }
  setFlatSregs(vcpu, FLAT_SEGMENTS.code32, layout, {
    cr0: CR0.PE | CR0.MP | CR0.ET | CR0.NE | (options.paging ? CR0.WP | CR0.PG : 0n),
    cr2: 0n,
    cr3,
    cr4: CR4.OSFXSR | CR4.OSXMMEXCPT | (options.paging ? CR4.PSE : 0n),
    efer: 0n,
  });
  setEntry(vcpu, options);
  return layout;
}

/**
 * 64-bit long mode: a 64-bit code segment (selector 0x08), flat data (0x10), a 64-bit TSS in TR,
 * 4-level page tables identity-mapping the first `identityMapGiB` GiB, CR0.PG|PE, CR4.PAE,
 * EFER.LME|LMA, interrupts off. If the vCPU has no CPUID yet it gets KVM's supported one, so that
 * the guest's own CPUID and EFER writes see long mode (KVM refuses EFER.LME to a guest whose CPUID
 * lacks it: arch/x86/kvm/x86.c, __kvm_valid_efer()).
 */
export function setupLongMode(vcpu: Vcpu, options: LongModeOptions): ModeLayout {
  const gib = options.identityMapGiB ?? 4;
  if (!Number.isInteger(gib) || gib < 1 || gib > 512) throw outOfRange('options.identityMapGiB', '>= 1 && <= 512', gib);
  const { tables, mem } = tablesIn(vcpu, options.tables, 0x2000 + (2 + gib) * 0x1000);
  const layout = writeTables(mem, tables, 64, options.handlers);
  const pt = identityMap4Level(tables + 0x2000n, gib);
  mem.write(pt.root, pt.bytes);
  layout.pageTables = pt.root;
  layout.end = pt.root + BigInt(pt.bytes.length);
  if (vcpu.cpuid === undefined) vcpu.setCpuid2(vcpu.vm.kvm.supportedCpuid());
  setFlatSregs(vcpu, FLAT_SEGMENTS.code64, layout, {
    cr0: CR0.PE | CR0.MP | CR0.ET | CR0.NE | CR0.WP | CR0.PG,
    cr2: 0n,
    cr3: pt.root,
    cr4: CR4.PAE | CR4.OSFXSR | CR4.OSXMMEXCPT,
    efer: EFER.LME | EFER.LMA,
  });
  setEntry(vcpu, options);
  return layout;
}

/** The vCPU's segments flat over `code` and the data selector, TR/GDT/IDT from `layout`, and `control` (CR0, CR2, CR3, CR4, EFER). */
function setFlatSregs(
  vcpu: Vcpu,
  code: (typeof FLAT_SEGMENTS)['code32'],
  layout: ModeLayout,
  control: { cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; efer: bigint },
): void {
  const data = FLAT_SEGMENTS.data;
  vcpu.setSregs({
    ...vcpu.getSregs(),
    cs: code,
    ds: data,
    es: data,
    fs: data,
    gs: data,
    ss: data,
    tr: tssSegment(layout.tss),
    ldt: NO_LDT,
    gdt: { base: layout.gdt, limit: layout.gdtLimit },
    idt: { base: layout.idt, limit: layout.idtLimit },
    ...control,
  });
}

function addr(name: string, v: number | bigint): bigint {
  if ((typeof v !== 'number' && typeof v !== 'bigint') || (typeof v === 'number' && !Number.isSafeInteger(v)))
    throw invalidArgValue(name, v, 'is not an integer address');
  const b = BigInt(v);
  if (b < 0n || b >= 2n ** 64n) throw outOfRange(name, '>= 0 && < 2^64', v);
  return b;
}

/** The guest memory holding `length` bytes at the tables' address. */
function tablesIn(vcpu: Vcpu, at: number | bigint | undefined, length: number): { tables: bigint; mem: GuestMemory } {
  const tables = at === undefined ? DEFAULT_TABLES : addr('options.tables', at);
  if (tables % 0x1000n !== 0n) throw invalidArgValue('options.tables', at, 'is not 4 KiB-aligned');
  const mem = vcpu.vm.memoryAt(tables, length);
  if (!mem)
    throw invalidArgValue(
      'options.tables',
      at ?? DEFAULT_TABLES,
      `is not the start of ${length} bytes of the VM's memory (add memory there with vm.addMemory(), or pass another address)`,
    );
  return { tables, mem };
}

/** GDT (null, code64, data, code32, TSS) and TSS on the first page, IDT on the second. */
function writeTables(
  mem: GuestMemory,
  tables: bigint,
  bits: 32 | 64,
  handlers: Readonly<Record<number, number | bigint>> = {},
): ModeLayout {
  const gdt = tables;
  const tss = tables + TSS_OFFSET;
  const idt = tables + 0x1000n;
  mem.fill(tables, 0x2000);
  const entries: bigint[] = [0n, ...[FLAT_SEGMENTS.code64, FLAT_SEGMENTS.data, FLAT_SEGMENTS.code32].map(segmentDescriptor)];
  const tssSeg: Segment = tssSegment(tss);
  if (bits === 64) entries.push(...systemDescriptor64(tssSeg));
  else entries.push(segmentDescriptor(tssSeg));
  entries.forEach((d, i) => mem.writeU64(gdt + BigInt(8 * i), d));
  // The TSS: no I/O permission bitmap (its offset is past the limit); ring 0 takes no stack from it.
  mem.writeU16(tss + 0x66n, 0x68); // the I/O map base, at 0x66 in both the 32- and the 64-bit TSS
  const gate = bits === 64 ? 16 : 8;
  for (const [key, handler] of Object.entries(handlers)) {
    const vector = Number(key);
    if (!Number.isInteger(vector) || vector < 0 || vector > 255) throw outOfRange('options.handlers vector', '>= 0 && <= 255', key);
    const h = addr(`options.handlers[${vector}]`, handler);
    const at = idt + BigInt(gate * vector);
    if (bits === 64) {
      const [lo, hi] = interruptGate64(h, SELECTORS.code64);
      mem.writeU64(at, lo);
      mem.writeU64(at + 8n, hi);
    } else mem.writeU64(at, interruptGate32(h, SELECTORS.code32));
  }
  return {
    gdt,
    gdtLimit: 8 * entries.length - 1,
    tss,
    idt,
    idtLimit: 256 * gate - 1,
    pageTables: undefined,
    end: tables + 0x2000n,
    selectors: SELECTORS,
  };
}

function setEntry(vcpu: Vcpu, options: ModeSetupOptions): void {
  const rip = addr('options.entry', options.entry);
  const rsp = addr('options.stack', options.stack ?? 0x8000);
  vcpu.setRegs({ ...vcpu.getRegs(), rip, rsp, rflags: 2n });
}

/**
 * The page-state tracker: for every page of an SEV guest's RAM, normal, private, shared or converting,
 * driven by the VM's life cycle (vm-state-table.ts), launch and receive data, the guest's
 * KVM_HC_MAP_GPA_RANGE hypercalls (map-gpa-range.ts) and MSR_KVM_MIGRATION_CONTROL
 * (migration-control-msr.ts), with the boot generations of boot-generations.ts. Every change goes
 * through the page table (page-state-table.ts) and is reported to `onChange` listeners: the "dirty"
 * notice a migration needs (a page whose state changes must be sent again).
 *
 * Upstream KVM keeps none of this (Sean Christopherson asked for the exit to user space instead of
 * in-kernel bookkeeping; arch/x86/kvm/x86.c only forwards the hypercall), so the VMM must.
 */
import { KvmSevError } from '../../backend/errors.js';
import { BootGenerations, type BootGenerationsState } from './boot-generations.js';
import { PAGE_SHIFT, PageRunMap, type Piece, type Segment } from './page-run-map.js';
import { PAGE_STATE_TABLE, PAGE_STATES, type PageOp } from './page-state-table.js';
import type { PageState, PageStateChange, PageStateRun, PageStateView } from './page-state-view.js';
import { VM_STATES, VM_TRACKS_PAGES, vmTransition, type VmEvent, type VmState } from './vm-state-table.js';

export const PAGE_STATE_SNAPSHOT_VERSION = 1;

export interface PageStateTrackerOptions {
  /** Guest RAM: the memory slots (e.g. `vm.memory.map((m) => ({ gpa: m.guestPhysAddr, size: m.size }))`). */
  ram: readonly { gpa: bigint; size: number | bigint }[];
  /**
   * Boot generations (default true): requests from a boot the guest already left are ignored.
   * false reproduces the tracker the kexec race breaks (for tests and comparison).
   */
  generations?: boolean;
  /** Honour boot IDs in KVM_HC_MAP_GPA_RANGE attrs bits 31:16 (kvm-sev's opt-in extension; default false). */
  explicitGenerationIds?: boolean;
  /** Every logged event (ignored, refused, invalid requests) as it happens. */
  onLog?: (entry: PageStateLogEntry) => void;
}

/** Why the tracker did not do what a request asked. */
export interface PageStateLogEntry {
  readonly kind: 'stale' | 'invalid' | 'refused' | 'msr';
  readonly vcpu?: number;
  readonly gpa?: bigint;
  readonly pages?: number;
  readonly generation: number;
  readonly reason: string;
}

/** What {@link PageStateTracker.snapshot} returns: JSON-serialisable, for the handoff and migration. */
export interface PageStateSnapshot {
  version: number;
  vmState: VmState;
  ram: { gpa: string; pages: number }[];
  runs: { gpa: string; pages: number; state: PageState; generation: number; to?: 'private' | 'shared'; vcpu?: number }[];
  boot: BootGenerationsState;
  options: { generations: boolean; explicitGenerationIds: boolean };
}

/** A hypercall the VMM answered but the guest has not been re-entered with yet. */
interface Pending {
  start: bigint;
  end: bigint;
  to: 'private' | 'shared';
  generation: number;
}

const LOG_LIMIT = 256;

export class PageStateTracker implements PageStateView {
  private map: PageRunMap;
  private vm: VmState = 'normal';
  private readonly boot: BootGenerations;
  private readonly listeners = new Set<(c: PageStateChange) => void>();
  private readonly pending = new Map<number, Pending>();
  private readonly logged: PageStateLogEntry[] = [];
  readonly explicitGenerationIds: boolean;
  private readonly onLog: ((e: PageStateLogEntry) => void) | undefined;

  constructor(o: PageStateTrackerOptions) {
    const ram = o.ram.map((r) => {
      const size = BigInt(r.size);
      if (r.gpa & 0xfffn || size & 0xfffn || size <= 0n)
        throw new RangeError(`guest RAM at 0x${r.gpa.toString(16)} (0x${size.toString(16)} bytes) is not whole 4 KiB pages`);
      return { start: r.gpa >> PAGE_SHIFT, end: (r.gpa + size) >> PAGE_SHIFT };
    });
    this.boot = new BootGenerations(o.generations ?? true);
    this.explicitGenerationIds = o.explicitGenerationIds ?? false;
    this.onLog = o.onLog;
    this.map = new PageRunMap(ram, 'normal', this.boot.generation);
  }

  // ---- the read side (PageStateView) ----

  pageState(gpa: bigint): PageState {
    const s = this.map.at(gpa >> PAGE_SHIFT);
    if (!s) throw new RangeError(`0x${gpa.toString(16)} is not guest RAM`);
    return s.state;
  }

  *runs(): Iterable<PageStateRun> {
    let cur: { start: bigint; end: bigint; state: PageState } | undefined;
    for (const s of this.map.segments()) {
      if (cur && cur.end === s.start && cur.state === s.state) cur.end = s.end;
      else {
        if (cur) yield { gpa: cur.start << PAGE_SHIFT, pages: Number(cur.end - cur.start), state: cur.state };
        cur = { start: s.start, end: s.end, state: s.state };
      }
    }
    if (cur) yield { gpa: cur.start << PAGE_SHIFT, pages: Number(cur.end - cur.start), state: cur.state };
  }

  get migrationReady(): boolean {
    return this.boot.ready;
  }

  get generation(): number {
    return this.boot.generation;
  }

  onChange(listener: (change: PageStateChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The VM's life-cycle state (vm-state-table.ts). */
  get vmState(): VmState {
    return this.vm;
  }

  /** The last logged events (ignored, refused and invalid requests), oldest first. */
  get log(): readonly PageStateLogEntry[] {
    return this.logged;
  }

  /** Page counts per state. */
  counts(): Record<PageState, number> {
    const c = { normal: 0, private: 0, shared: 0, converting: 0 };
    for (const s of this.map.segments()) c[s.state] += Number(s.end - s.start);
    return c;
  }

  // ---- the VM's life cycle ----

  /**
   * Applies a VM event (vm-state-table.ts), and its page operation to all RAM. An error cell throws
   * ERR_KVM_SEV_VM_STATE naming the state and the event. SEND_START is refused while the guest has not
   * set KVM_MIGRATION_READY, unless `ignoreMigrationControl` says the caller knows better (a guest
   * whose firmware never sets the MSR, e.g. an upstream-OVMF EFI boot).
   */
  vmEvent(event: VmEvent, o: { ignoreMigrationControl?: boolean } = {}): VmState {
    const cell = vmTransition(this.vm, event);
    if ('error' in cell) throw new KvmSevError('ERR_KVM_SEV_VM_STATE', cell.error);
    if (event === 'SEND_START' && !this.boot.ready && !o.ignoreMigrationControl) {
      const e = new KvmSevError(
        'ERR_KVM_SEV_NOT_MIGRATABLE',
        `the guest has not set KVM_MIGRATION_READY in MSR_KVM_MIGRATION_CONTROL (generation ${this.generation}): ` +
          'its page states may be incomplete or from a boot in progress',
      );
      (e as KvmSevError & { hint?: string }).hint =
        'wait for the guest to finish booting, or pass { ignoreMigrationControl: true } for a guest whose firmware never sets the MSR';
      this.record({ kind: 'refused', generation: this.generation, reason: e.message });
      throw e;
    }
    this.vm = cell.to;
    if (cell.pages) {
      const cause = cell.pages === 'init-done' ? (event === 'RECEIVE_FINISH' ? 'receive' : 'launch-finish') : 'reset';
      if (cell.pages === 'terminate') this.pending.clear();
      for (const r of this.map.ram) this.apply(r.start, r.end, cell.pages, cause);
    }
    if (event === 'TERMINATE' || event === 'RESET' || event === 'DECOMMISSION') this.boot.reboot();
    return this.vm;
  }

  /** Whether a migration may start now, and if not, why. */
  migratable(): { ok: true } | { ok: false; reason: string } {
    if (this.vm !== 'running') return { ok: false, reason: `the VM is '${this.vm}', not running` };
    if (!this.boot.ready) return { ok: false, reason: 'the guest has not set KVM_MIGRATION_READY (MSR_KVM_MIGRATION_CONTROL)' };
    return { ok: true };
  }

  /** LAUNCH_UPDATE_DATA encrypted [gpa, gpa + size) (launching only). */
  launchUpdate(gpa: bigint, size: number | bigint): void {
    this.dataUpdate('launching', 'launch', gpa, size);
  }

  /** RECEIVE_UPDATE_DATA wrote a private page (receiving only). */
  receiveUpdate(gpa: bigint, size: number | bigint): void {
    this.dataUpdate('receiving', 'receive', gpa, size);
  }

  // ---- the guest's requests (map-gpa-range.ts, migration-control-msr.ts) ----

  /** A vCPU the VMM runs (so that its generation is known from the start). */
  addVcpu(id: number): void {
    this.boot.addVcpu(id);
  }

  /**
   * The guest on `vcpu` asked for frames [gpa, gpa + pages) to become private (`encrypted`) or shared,
   * with boot ID `bootId` (0: none). Returns the hypercall's answer: 0, or -KVM_EINVAL / -KVM_ENOSYS.
   * The pages are converting until {@link settle}(vcpu), which the VMM calls before the vCPU's next
   * KVM_RUN (the guest sees the answer then).
   */
  mapGpaRange(vcpu: number, gpa: bigint, pages: bigint, encrypted: boolean, bootId = 0): { ret: bigint; reason?: string } {
    this.settle(vcpu);
    const start = gpa >> PAGE_SHIFT;
    const end = start + pages;
    const log = (kind: PageStateLogEntry['kind'], reason: string, generation = this.generation) =>
      this.record({ kind, vcpu, gpa, pages: Number(pages), generation, reason });
    if (!VM_TRACKS_PAGES[this.vm]) {
      const reason = `the VM is '${this.vm}': no SEV guest is running whose pages could change`;
      log('refused', reason);
      return { ret: -KVM_ENOSYS, reason };
    }
    if (!this.map.covers(start, end)) {
      const reason = `[0x${gpa.toString(16)}, +${pages} pages) is not inside guest RAM`;
      log('invalid', reason);
      return { ret: -KVM_EINVAL, reason };
    }
    const who = this.boot.attribute(vcpu, bootId);
    if (who.stale !== undefined) {
      // The old boot is gone; its kernel ignores the answer (enc_dec_hypercall() is void).
      log('stale', `ignored: ${who.stale}`, who.generation);
      return { ret: 0n, reason: who.stale };
    }
    const to = encrypted ? 'private' : 'shared';
    let late = false;
    if (who.late !== undefined) {
      // Pages a newer generation declared (the new boot's reset) are the new boot's: leave them.
      late = this.map.segments().some((s) => s.end > start && s.start < end && s.generation > who.generation);
      if (late) log('stale', `ignored where a newer generation declared the pages: ${who.late}`, who.generation);
    }
    this.pending.set(vcpu, { start, end, to, generation: who.generation });
    this.apply(start, end, 'convert', 'hypercall', { to, vcpu, generation: who.generation, ...(late ? { upTo: who.generation } : {}) });
    return { ret: 0n, ...(late ? { reason: who.late } : {}) };
  }

  /** A request the hypercall handler rejected before it reached the pages (logged). */
  noteInvalid(vcpu: number, gpa: bigint, pages: bigint, reason: string): void {
    this.record({ kind: 'invalid', vcpu, gpa, pages: Number(pages), generation: this.generation, reason });
  }

  /** The guest on `vcpu` was re-entered with its hypercall's answer: its converting pages settle. */
  settle(vcpu: number): void {
    const p = this.pending.get(vcpu);
    if (!p) return;
    this.pending.delete(vcpu);
    this.apply(p.start, p.end, p.to === 'shared' ? 'share' : 'unshare', 'hypercall', { generation: p.generation, onlyVcpu: vcpu });
  }

  /** Settles every vCPU's pending hypercall (all vCPUs completed their exits, e.g. before a handoff). */
  settleAll(): void {
    for (const v of [...this.pending.keys()]) this.settle(v);
  }

  /** MSR_KVM_MIGRATION_CONTROL as the guest reads it. */
  readMigrationControl(): bigint {
    return this.boot.ready ? 1n : 0n;
  }

  /** A WRMSR of MSR_KVM_MIGRATION_CONTROL; false (inject #GP) for reserved bits 63:1. */
  writeMigrationControl(vcpu: number, value: bigint): boolean {
    if (value & ~1n) {
      this.record({ kind: 'invalid', vcpu, generation: this.generation, reason: `WRMSR 0x${value.toString(16)}: bits 63:1 are reserved` });
      return false;
    }
    const before = this.generation;
    if (this.boot.msrWrite(vcpu, value === 1n))
      this.record({
        kind: 'msr',
        vcpu,
        generation: this.generation,
        reason: `the guest left generation ${before} (KVM_MIGRATION_READY cleared)`,
      });
    return true;
  }

  // ---- snapshot / restore ----

  /** The whole state, JSON-serialisable (bigints as hex strings). */
  snapshot(): PageStateSnapshot {
    return {
      version: PAGE_STATE_SNAPSHOT_VERSION,
      vmState: this.vm,
      ram: this.map.ram.map((r) => ({ gpa: (r.start << PAGE_SHIFT).toString(16), pages: Number(r.end - r.start) })),
      runs: this.map.segments().map((s) => ({
        gpa: (s.start << PAGE_SHIFT).toString(16),
        pages: Number(s.end - s.start),
        state: s.state,
        generation: s.generation,
        ...(s.to ? { to: s.to } : {}),
        ...(s.vcpu !== undefined ? { vcpu: s.vcpu } : {}),
      })),
      boot: this.boot.save(),
      options: { generations: this.boot.enabled, explicitGenerationIds: this.explicitGenerationIds },
    };
  }

  /** A tracker with a snapshot's state (a new VMM after a handoff; a migration's destination). */
  static fromSnapshot(snap: PageStateSnapshot, o: { onLog?: (e: PageStateLogEntry) => void } = {}): PageStateTracker {
    const s = checkSnapshot(snap);
    const t = new PageStateTracker({
      ram: s.ram.map((r) => ({ gpa: BigInt(`0x${r.gpa}`), size: BigInt(r.pages) << PAGE_SHIFT })),
      generations: s.options.generations,
      explicitGenerationIds: s.options.explicitGenerationIds,
      ...(o.onLog ? { onLog: o.onLog } : {}),
    });
    t.load(s, false);
    return t;
  }

  /**
   * Replaces this tracker's pages, migration-control value and generations with a snapshot's (same RAM
   * layout) and reports every run as a 'restore' change. The VM state comes from the snapshot too,
   * unless `keepVmState` (a migration's destination, which stays 'receiving' until RECEIVE_FINISH
   * while the source's snapshot says 'sending').
   */
  restore(snap: PageStateSnapshot, o: { keepVmState?: boolean } = {}): void {
    const vm = this.vm;
    this.load(checkSnapshot(snap), true);
    if (o.keepVmState) this.vm = vm;
  }

  private load(s: PageStateSnapshot, notify: boolean): void {
    const ram = s.ram.map((r) => `${r.gpa}:${r.pages}`).join(',');
    const mine = this.snapshot()
      .ram.map((r) => `${r.gpa}:${r.pages}`)
      .join(',');
    if (ram !== mine) throw new KvmSevError('ERR_KVM_SEV_PAGE_STATES', `the snapshot's RAM (${ram}) is not this guest's (${mine})`);
    const segs: Segment[] = s.runs.map((r) => {
      const start = BigInt(`0x${r.gpa}`) >> PAGE_SHIFT;
      return {
        start,
        end: start + BigInt(r.pages),
        state: r.state,
        generation: r.generation,
        ...(r.to ? { to: r.to } : {}),
        ...(r.vcpu !== undefined ? { vcpu: r.vcpu } : {}),
      };
    });
    try {
      this.map.replace(segs);
    } catch (e) {
      throw new KvmSevError('ERR_KVM_SEV_PAGE_STATES', `bad page-state snapshot: ${(e as Error).message}`);
    }
    this.vm = s.vmState;
    this.boot.load(s.boot);
    this.pending.clear();
    for (const g of segs)
      if (g.state === 'converting' && g.vcpu !== undefined) {
        const p = this.pending.get(g.vcpu);
        if (p) p.end = g.end;
        else this.pending.set(g.vcpu, { start: g.start, end: g.end, to: g.to ?? 'private', generation: g.generation });
      }
    if (notify)
      for (const r of this.runs())
        this.emit({ gpa: r.gpa, pages: r.pages, from: 'mixed', to: r.state, generation: this.generation, cause: 'restore' });
  }

  // ---- internals ----

  private dataUpdate(state: VmState, cause: 'launch' | 'receive', gpa: bigint, size: number | bigint): void {
    if (this.vm !== state)
      throw new KvmSevError('ERR_KVM_SEV_VM_STATE', `${cause === 'launch' ? 'LAUNCH' : 'RECEIVE'}_UPDATE_DATA in VM state '${this.vm}'`);
    const start = gpa >> PAGE_SHIFT;
    const end = (gpa + BigInt(size) + 0xfffn) >> PAGE_SHIFT;
    if (!this.map.covers(start, end))
      throw new RangeError(`[0x${gpa.toString(16)}, +0x${BigInt(size).toString(16)}) is not inside guest RAM`);
    this.apply(start, end, 'launch-update', cause);
  }

  private apply(
    start: bigint,
    end: bigint,
    op: PageOp,
    cause: PageStateChange['cause'],
    o: { to?: 'private' | 'shared'; vcpu?: number; generation?: number; onlyVcpu?: number; upTo?: number } = {},
  ): void {
    const generation = o.generation ?? this.generation;
    const pieces: Piece[] = this.map.update(start, end, (s) => {
      if (o.onlyVcpu !== undefined && !(s.state === 'converting' && s.vcpu === o.onlyVcpu)) return undefined;
      if (o.upTo !== undefined && s.generation > o.upTo) return undefined;
      const state = PAGE_STATE_TABLE[s.state][op];
      if (state === 'converting') {
        if (op === 'convert') return { start: s.start, end: s.end, state, generation, to: o.to!, vcpu: o.vcpu! };
        return undefined; // init-done leaves a conversion to its hypercall
      }
      if (state === s.state && s.generation === generation) return undefined;
      return { start: s.start, end: s.end, state, generation };
    });
    if (pieces.length === 0) return;
    // One change per contiguous stretch that changed.
    let cur: { start: bigint; end: bigint; from: PageState | 'mixed'; to: PageState } | undefined;
    const flush = () => {
      if (cur)
        this.emit({ gpa: cur.start << PAGE_SHIFT, pages: Number(cur.end - cur.start), from: cur.from, to: cur.to, generation, cause });
    };
    for (const p of pieces) {
      if (cur && cur.end === p.start && cur.to === p.to) {
        cur.end = p.end;
        if (cur.from !== p.from) cur.from = 'mixed';
      } else {
        flush();
        cur = { ...p };
      }
    }
    flush();
  }

  private emit(c: PageStateChange): void {
    for (const l of this.listeners) l(c);
  }

  private record(e: PageStateLogEntry): void {
    this.logged.push(e);
    if (this.logged.length > LOG_LIMIT) this.logged.shift();
    this.onLog?.(e);
  }
}

const KVM_ENOSYS = 1000n;
const KVM_EINVAL = 22n;

function checkSnapshot(s: PageStateSnapshot): PageStateSnapshot {
  const bad = (why: string) => new KvmSevError('ERR_KVM_SEV_PAGE_STATES', `bad page-state snapshot: ${why}`);
  if (!s || typeof s !== 'object') throw bad('not an object');
  if (s.version !== PAGE_STATE_SNAPSHOT_VERSION) throw bad(`version ${String(s.version)}, expected ${PAGE_STATE_SNAPSHOT_VERSION}`);
  if (!VM_STATES.includes(s.vmState)) throw bad(`unknown VM state ${String(s.vmState)}`);
  if (!Array.isArray(s.ram) || !Array.isArray(s.runs) || !s.boot || !s.options) throw bad('missing ram, runs, boot or options');
  const hex = /^[0-9a-f]+$/;
  for (const r of [...s.ram, ...s.runs]) {
    if (typeof r.gpa !== 'string' || !hex.test(r.gpa) || !Number.isSafeInteger(r.pages) || r.pages <= 0)
      throw bad(`run ${JSON.stringify(r)} is not { gpa: hex, pages: > 0 }`);
  }
  for (const r of s.runs) if (!PAGE_STATES.includes(r.state)) throw bad(`unknown page state ${String(r.state)}`);
  return s;
}

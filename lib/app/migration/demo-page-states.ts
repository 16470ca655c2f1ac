/**
 * The migration demo VMM's page-state table: a minimal PageStateView over one contiguous RAM range,
 * fed by the guest's KVM_HC_MAP_GPA_RANGE exits (Documentation/virt/kvm/x86/hypercalls.rst: attrs bit 4
 * = encrypted, reserved bits refused with -KVM_EINVAL, `ret` always written) and
 * MSR_KVM_MIGRATION_CONTROL writes (Documentation/virt/kvm/x86/msr.rst). It stands in for the page-state
 * tracker (lib/sev/page-states, issue 14) in the CLI demo and the tests until that lands; migration only
 * reads the PageStateView interface, so either serves.
 */
import type { VcpuExit } from '../../kvm/exits.js';
import type { PageState, PageStateChange, PageStateRun, PageStateView } from '../../sev/page-states/page-state-view.js';

const MSR_KVM_MIGRATION_CONTROL = 0x4b564d08;

export class DemoPageStates implements PageStateView {
  private readonly states: PageState[];
  private readonly listeners = new Set<(c: PageStateChange) => void>();
  migrationReady = false;
  generation = 0;

  constructor(
    private readonly base: bigint,
    pages: number,
    initial: PageState = 'private',
  ) {
    this.states = new Array<PageState>(pages).fill(initial);
  }

  private index(gpa: bigint): number {
    const i = Number((gpa - this.base) >> 12n);
    if (gpa < this.base || i >= this.states.length) throw new RangeError(`0x${gpa.toString(16)} is outside guest RAM`);
    return i;
  }

  pageState(gpa: bigint): PageState {
    return this.states[this.index(gpa)]!;
  }

  *runs(): Iterable<PageStateRun> {
    let start = 0;
    for (let i = 1; i <= this.states.length; i++) {
      if (i === this.states.length || this.states[i] !== this.states[start]) {
        yield { gpa: this.base + BigInt(start * 4096), pages: i - start, state: this.states[start]! };
        start = i;
      }
    }
  }

  onChange(listener: (c: PageStateChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(gpa: bigint, pages: number, to: PageState, cause: PageStateChange['cause']): void {
    const i = this.index(gpa);
    this.index(gpa + BigInt((pages - 1) * 4096));
    const from = this.states.slice(i, i + pages).every((s) => s === this.states[i]) ? this.states[i]! : 'mixed';
    this.states.fill(to, i, i + pages);
    for (const l of this.listeners) l({ gpa, pages, from, to, generation: this.generation, cause });
  }

  install(runs: readonly PageStateRun[]): void {
    for (const r of runs) this.set(r.gpa, r.pages, r.state, 'restore');
  }

  /** Serves a hypercall or MSR exit; false for any other exit. */
  handleExit(exit: VcpuExit): boolean {
    if (exit.reason === 'hypercall') {
      const [gpa, pages, attrs] = exit.args as [bigint, bigint, bigint];
      if (exit.nr !== 12n || (attrs & ~0x1fn) !== 0n || pages === 0n) {
        exit.reply(-22n); // -KVM_EINVAL
        return true;
      }
      this.set(gpa, Number(pages), (attrs & 0x10n) !== 0n ? 'private' : 'shared', 'hypercall');
      exit.reply(0n);
      return true;
    }
    if (exit.reason === 'wrmsr' && exit.index === MSR_KVM_MIGRATION_CONTROL) {
      const ready = (exit.data & 1n) !== 0n;
      if (!ready && this.migrationReady) this.generation++;
      this.migrationReady = ready;
      exit.reply({});
      return true;
    }
    if (exit.reason === 'rdmsr' && exit.index === MSR_KVM_MIGRATION_CONTROL) {
      exit.reply({ data: this.migrationReady ? 1n : 0n });
      return true;
    }
    return false;
  }
}

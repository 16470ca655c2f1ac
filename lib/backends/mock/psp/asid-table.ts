/**
 * Per-ASID firmware bookkeeping (docs/sev-reference.md §2.2 "Activation"; AMD-ASPFW models one state per
 * ASID and CCX, the mock has one CCX):
 * - clean: usable by ACTIVATE;
 * - dirty: used since the last DF_FLUSH (all ASIDs after INIT; an in-use ASID after DEACTIVATE):
 *   ACTIVATE answers DF_FLUSH_REQUIRED;
 * - allocated: bound to a guest whose activation is pending (activated before RUNNING);
 * - inUse: bound to a running guest.
 * allocated and inUse ASIDs are owned: ACTIVATE of another guest answers ASID_OWNED.
 */

export type AsidState = 'clean' | 'dirty' | 'allocated' | 'inUse';

const CODE = { clean: 0, dirty: 1, allocated: 2, inUse: 3 } as const;
const NAME: readonly AsidState[] = ['clean', 'dirty', 'allocated', 'inUse'];

export class AsidTable {
  readonly max: number;
  #state: Uint8Array;

  /** `max` = CPUID 0x8000001F ECX; ASIDs are 1..max. Everything starts dirty (INIT's rule). */
  constructor(max: number) {
    this.max = max;
    this.#state = new Uint8Array(max + 1).fill(CODE.dirty);
  }

  state(asid: number): AsidState {
    return NAME[this.#state[asid]!]!;
  }

  set(asid: number, s: AsidState): void {
    this.#state[asid] = CODE[s];
  }

  isOwned(asid: number): boolean {
    const s = this.#state[asid];
    return s === CODE.allocated || s === CODE.inUse;
  }

  /** INIT marks every ASID invalid and dirty. */
  markAllDirty(): void {
    this.#state.fill(CODE.dirty);
  }

  /** DF_FLUSH: dirty ASIDs become clean. */
  flush(): void {
    for (let a = 1; a <= this.max; a++) if (this.#state[a] === CODE.dirty) this.#state[a] = CODE.clean;
  }

  count(s: AsidState): number {
    let n = 0;
    for (let a = 1; a <= this.max; a++) if (this.#state[a] === CODE[s]) n++;
    return n;
  }
}

/**
 * A guest context (GCTX) of the mock firmware and the handle table (docs/sev-reference.md §2.2, §3.4).
 * Handles are 1..1024, the lowest free one is used; 0 means "no handle".
 */
import type { LaunchDigest } from '../../../crypto/index.js';

/** Number of guest contexts (SEV_GUEST_COUNT_MAX). */
export const MAX_GUESTS = 1024;

/** Activation: none; pending (ACTIVATE before RUNNING, completes at LAUNCH/RECEIVE_FINISH); active. */
export type Activation = 'none' | 'pending' | 'active';

export class GuestContext {
  readonly handle: number;
  readonly policy: number;
  /** GSTATE */
  state: number;
  /** The VEK ("umc_key_seed"): 16 random bytes, or a copy of a key-sharing partner's. */
  readonly vek: Buffer;
  /** SEV-ES guest (policy bit ES on an ES-initialised platform). */
  readonly es: boolean;
  asid = 0;
  activation: Activation = 'none';
  /** GCTX.LD while launching (LUPDATE); dropped at LAUNCH_FINISH. */
  digest: LaunchDigest | null;
  /** The finalised launch digest, kept for ATTESTATION. */
  launchDigest: Buffer | null = null;
  /** Transport keys (zero when LAUNCH_START had no session); wiped when the channel closes. */
  tek: Buffer | null;
  tik: Buffer | null;
  /** LAUNCH_MEASURE's 32-byte MEASURE, bound into LAUNCH_SECRET's MAC. */
  measure: Buffer | null = null;

  constructor(init: {
    handle: number;
    policy: number;
    state: number;
    vek: Buffer;
    es: boolean;
    tek: Buffer;
    tik: Buffer;
    digest: LaunchDigest | null;
  }) {
    this.handle = init.handle;
    this.policy = init.policy;
    this.state = init.state;
    this.vek = init.vek;
    this.es = init.es;
    this.tek = init.tek;
    this.tik = init.tik;
    this.digest = init.digest;
  }

  /** sev_channel_close: wipe TEK, TIK and the stored MEASURE. */
  closeChannel(): void {
    this.tek?.fill(0);
    this.tik?.fill(0);
    this.measure?.fill(0);
    this.tek = this.tik = this.measure = null;
  }
}

export class GuestTable {
  #slots: Array<GuestContext | undefined> = new Array<GuestContext | undefined>(MAX_GUESTS + 1);
  #count = 0;

  get count(): number {
    return this.#count;
  }

  /** The guest with this handle, if the handle is in 1..1024 and in use. */
  get(handle: number): GuestContext | undefined {
    if (!Number.isInteger(handle) || handle < 1 || handle > MAX_GUESTS) return undefined;
    return this.#slots[handle];
  }

  /** Lowest free handle, or 0 if all are taken (RESOURCE_LIMIT). */
  freeHandle(): number {
    for (let h = 1; h <= MAX_GUESTS; h++) if (!this.#slots[h]) return h;
    return 0;
  }

  add(g: GuestContext): void {
    this.#slots[g.handle] = g;
    this.#count++;
  }

  remove(handle: number): void {
    const g = this.#slots[handle];
    if (!g) return;
    g.closeChannel();
    g.vek.fill(0);
    this.#slots[handle] = undefined;
    this.#count--;
  }

  clear(): void {
    for (let h = 1; h <= MAX_GUESTS; h++) this.remove(h);
  }

  *[Symbol.iterator](): IterableIterator<GuestContext> {
    for (let h = 1; h <= MAX_GUESTS; h++) {
      const g = this.#slots[h];
      if (g) yield g;
    }
  }
}

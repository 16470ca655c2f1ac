/**
 * ASIDs (arch/x86/kvm/svm/sev.c: sev_asid_new(), sev_flush_asids()): SEV guests use [min_sev_asid, max_sev_asid], SEV-ES and SNP guests
 * [1, min_sev_asid - 1]. Allocation takes the lowest free ASID of the class. A destroyed guest's ASID
 * goes to the reclaim bitmap and stays unusable until a flush (WBINVD + DF_FLUSH) recycles every
 * reclaimable ASID at once; that flush is tried only when a class is exhausted, and only if something
 * waits in the reclaim bitmap. No ASID left even then: EBUSY.
 */
import { E, fail } from '../common/errno.js';

export type AsidClass = 'sev' | 'es';

export class AsidSpace {
  readonly min: number;
  readonly max: number;
  /** sev_asid_bitmap: set while allocated or waiting in reclaim. */
  private readonly used: Uint8Array;
  /** sev_reclaim_asid_bitmap */
  private readonly reclaim: Uint8Array;

  constructor(minSevAsid: number, maxSevAsid: number) {
    this.min = minSevAsid;
    this.max = maxSevAsid;
    this.used = new Uint8Array(maxSevAsid + 2);
    this.reclaim = new Uint8Array(maxSevAsid + 2);
  }

  range(cls: AsidClass): [number, number] {
    return cls === 'sev' ? [this.min, this.max] : [1, this.min - 1];
  }

  /**
   * sev_asid_new: the lowest free ASID, recycling once through `flush` (the DF_FLUSH, which returns
   * false if it failed). ENOTTY if the class is empty, EBUSY if exhausted.
   */
  allocate(cls: AsidClass, flush: () => boolean): number {
    const [lo, hi] = this.range(cls);
    if (lo > hi) fail(E.ENOTTY, `no ${cls} ASIDs on this host`);
    let retry = true;
    for (;;) {
      for (let a = lo; a <= hi; a++) {
        if (!this.used[a]) {
          this.used[a] = 1;
          return a;
        }
      }
      if (retry && this.recycle(flush)) {
        retry = false;
        continue;
      }
      fail(E.EBUSY, `all ${cls} ASIDs are in use`);
    }
  }

  /** __sev_recycle_asids: flush if anything waits in reclaim, then make it all free again. */
  private recycle(flush: () => boolean): boolean {
    if (!this.reclaim.some((x) => x === 1)) return false;
    if (!flush()) return false;
    for (let a = 0; a < this.reclaim.length; a++) {
      if (this.reclaim[a]) {
        this.used[a] = 0;
        this.reclaim[a] = 0;
      }
    }
    return true;
  }

  /** sev_asid_free: to the reclaim bitmap (not reusable before a flush). */
  free(asid: number): void {
    if (asid > 0) this.reclaim[asid] = 1;
  }

  /** ASIDs held by guests (allocated and not waiting for reclaim). */
  held(): number[] {
    const out: number[] = [];
    for (let a = 1; a <= this.max; a++) if (this.used[a] && !this.reclaim[a]) out.push(a);
    return out;
  }

  /** ASIDs waiting for a flush. */
  reclaimable(): number[] {
    const out: number[] = [];
    for (let a = 1; a <= this.max; a++) if (this.reclaim[a]) out.push(a);
    return out;
  }
}

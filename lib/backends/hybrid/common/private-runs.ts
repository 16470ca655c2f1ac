/**
 * Which bytes of one backing store are private, under which key and at which tweak address: a
 * sorted list of disjoint runs [start, end) of byte offsets. Used by the hybrid's
 * {@link PlaintextMemory}, which keeps plaintext in memory and must know what a real host would see.
 * Adjacent runs with the same key and address mapping merge, so a guest image loaded page by page
 * stays one run.
 */

export interface PrivateRun {
  /** Byte offsets in the backing store (ArrayBuffer), end exclusive. */
  readonly start: number;
  readonly end: number;
  /** The VEK the bytes are private under. */
  readonly key: Buffer;
  /** Tweak address of backing-store offset 0: the byte at offset o sits at `base + o`. */
  readonly base: bigint;
}

export interface RunSegment {
  readonly start: number;
  readonly end: number;
  /** null: shared (not private) bytes. */
  readonly run: PrivateRun | null;
}

function sameMapping(a: PrivateRun, b: PrivateRun): boolean {
  return a.base === b.base && (a.key === b.key || a.key.equals(b.key));
}

export class PrivateRuns {
  #runs: PrivateRun[] = [];

  get size(): number {
    return this.#runs.length;
  }

  /** Index of the first run whose end is after `pos`. */
  #first(pos: number): number {
    let lo = 0;
    let hi = this.#runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#runs[mid]!.end <= pos) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Make [start, end) private under `key` at `base` (or shared, with `key` null). */
  set(start: number, end: number, key: Buffer | null, base: bigint): void {
    if (end <= start) return;
    const runs = this.#runs;
    const i = this.#first(start);
    let j = i;
    const insert: PrivateRun[] = [];
    let right: PrivateRun | undefined;
    for (; j < runs.length && runs[j]!.start < end; j++) {
      const r = runs[j]!;
      if (r.start < start) insert.push({ ...r, end: start });
      if (r.end > end) right = { ...r, start: end };
    }
    const at = i + insert.length;
    if (key !== null) insert.push({ start, end, key, base });
    if (right) insert.push(right);
    runs.splice(i, j - i, ...insert);
    if (key === null) return;
    // Merge the new run with equal neighbours.
    if (at + 1 < runs.length && runs[at + 1]!.start === end && sameMapping(runs[at]!, runs[at + 1]!)) {
      runs.splice(at, 2, { ...runs[at]!, end: runs[at + 1]!.end });
    }
    if (at > 0 && runs[at - 1]!.end === start && sameMapping(runs[at - 1]!, runs[at]!)) {
      runs.splice(at - 1, 2, { ...runs[at - 1]!, end: runs[at]!.end });
    }
  }

  /** [start, end) cut into private runs and shared gaps, in order. */
  segments(start: number, end: number): RunSegment[] {
    const out: RunSegment[] = [];
    let pos = start;
    for (let k = this.#first(start); k < this.#runs.length && pos < end; k++) {
      const r = this.#runs[k]!;
      if (r.start >= end) break;
      if (r.start > pos) out.push({ start: pos, end: r.start, run: null });
      const s = Math.max(pos, r.start);
      const e = Math.min(end, r.end);
      out.push({ start: s, end: e, run: r });
      pos = e;
    }
    if (pos < end) out.push({ start: pos, end, run: null });
    return out;
  }

  /** Every run (for address look-ups). */
  all(): readonly PrivateRun[] {
    return this.#runs;
  }
}

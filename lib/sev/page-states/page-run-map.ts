/**
 * Guest RAM as sorted runs of pages in one state (an interval map keyed by guest frame number),
 * because most of an SEV guest's memory is private and the shared ranges are few.
 */
import type { PageState } from './page-state-view.js';

export const PAGE_SHIFT = 12n;

/** A run of frames [start, end) with one state; a converting run remembers its hypercall. */
export interface Segment {
  readonly start: bigint;
  readonly end: bigint;
  readonly state: PageState;
  /** The boot that last changed these pages. */
  readonly generation: number;
  /** converting: what the pages become when the hypercall of `vcpu` completes. */
  readonly to?: 'private' | 'shared';
  readonly vcpu?: number;
}

/** One change an update made: frames [start, end) went from `from` to `to`. */
export interface Piece {
  readonly start: bigint;
  readonly end: bigint;
  readonly from: PageState;
  readonly to: PageState;
}

/** Every segment has the same shape (all six fields), which keeps V8 on its fast path. */
function seg(s: Segment, start: bigint, end: bigint): Segment {
  return { start, end, state: s.state, generation: s.generation, to: s.to, vcpu: s.vcpu };
}

const same = (a: Segment, b: Segment) =>
  a.end === b.start && a.state === b.state && a.generation === b.generation && a.to === b.to && a.vcpu === b.vcpu;

export class PageRunMap {
  private segs: Segment[];
  /** The RAM regions (frames), sorted, not overlapping. */
  readonly ram: readonly { start: bigint; end: bigint }[];

  constructor(ram: readonly { start: bigint; end: bigint }[], state: PageState, generation: number) {
    const sorted = [...ram].filter((r) => r.end > r.start).sort((a, b) => (a.start < b.start ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) if (sorted[i]!.start < sorted[i - 1]!.end) throw new RangeError('guest RAM regions overlap');
    // Adjacent slots form one region.
    const merged: { start: bigint; end: bigint }[] = [];
    for (const r of sorted) {
      const last = merged[merged.length - 1];
      if (last && last.end === r.start) merged[merged.length - 1] = { start: last.start, end: r.end };
      else merged.push({ ...r });
    }
    this.ram = merged;
    this.segs = merged.map((r) => ({ start: r.start, end: r.end, state, generation, to: undefined, vcpu: undefined }));
  }

  /** Whether frames [start, end) are all guest RAM. */
  covers(start: bigint, end: bigint): boolean {
    return end > start && this.ram.some((r) => r.start <= start && end <= r.end);
  }

  /** The run holding frame `gfn`, or undefined outside RAM. */
  at(gfn: bigint): Segment | undefined {
    let lo = 0;
    let hi = this.segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = this.segs[mid]!;
      if (gfn < s.start) hi = mid - 1;
      else if (gfn >= s.end) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  segments(): readonly Segment[] {
    return this.segs;
  }

  /** Replaces the runs wholesale (a restored snapshot), after checking they tile RAM exactly. */
  replace(segs: readonly Segment[]): void {
    const sorted = [...segs].sort((a, b) => (a.start < b.start ? -1 : 1));
    let ri = 0;
    let cur = this.ram[0]?.start;
    for (const s of sorted) {
      const r = this.ram[ri];
      if (!r || s.start !== cur || s.end <= s.start || s.end > r.end)
        throw new RangeError(`page runs do not tile guest RAM at frame 0x${s.start.toString(16)}`);
      cur = s.end;
      if (cur === r.end) cur = this.ram[++ri]?.start;
    }
    if (ri !== this.ram.length) throw new RangeError('page runs do not cover all of guest RAM');
    this.segs = this.merge(sorted.map((s) => seg(s, s.start, s.end)));
  }

  /**
   * Applies `update` to every run's part inside frames [start, end) (undefined: leave it) and returns
   * the pieces whose state changed.
   */
  update(start: bigint, end: bigint, update: (s: Segment) => Segment | undefined): Piece[] {
    // Only the runs that overlap [start, end), and one neighbour each side to merge with, are rebuilt.
    const first = this.indexAfter(start);
    let last = first;
    while (last < this.segs.length && this.segs[last]!.start < end) last++;
    if (first === last) return [];
    const from = first > 0 ? first - 1 : first;
    const to = last < this.segs.length ? last + 1 : last;
    const out: Segment[] = [];
    const pieces: Piece[] = [];
    for (let i = from; i < to; i++) {
      const s = this.segs[i]!;
      if (i < first || i >= last) {
        out.push(s);
        continue;
      }
      const a = s.start < start ? start : s.start;
      const b = s.end > end ? end : s.end;
      if (s.start < a) out.push(seg(s, s.start, a));
      const mid = seg(s, a, b);
      const next = update(mid);
      if (next) {
        out.push(seg(next, a, b));
        if (next.state !== s.state) pieces.push({ start: a, end: b, from: s.state, to: next.state });
      } else out.push(mid);
      if (b < s.end) out.push(seg(s, b, s.end));
    }
    this.segs.splice(from, to - from, ...this.merge(out));
    return pieces;
  }

  /** The index of the first run that ends after frame `gfn`. */
  private indexAfter(gfn: bigint): number {
    let lo = 0;
    let hi = this.segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.segs[mid]!.end <= gfn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private merge(segs: Segment[]): Segment[] {
    const out: Segment[] = [];
    for (const s of segs) {
      const last = out[out.length - 1];
      if (last && same(last, s)) out[out.length - 1] = seg(last, last.start, s.end);
      else out.push(s);
    }
    return out;
  }
}

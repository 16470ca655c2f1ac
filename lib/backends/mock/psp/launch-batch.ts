/**
 * The memory side of a run of LAUNCH_UPDATE_DATA commands, completed in bulk.
 *
 * arch/x86/kvm/svm/sev.c: sev_launch_update_data() issues one command per physically contiguous run
 * of the pages it pinned, so a launch of the mock's scattered 4 KiB frames is a command per page.
 * Each command still makes its checks and returns its status when issued (the trace, the fault
 * injection and the throttle see every one); what it does to the bytes (extend GCTX.LD with the
 * plaintext, then encrypt it in place) is queued here and done for many pages at once: the digest
 * over buffer-adjacent pages in one update, the cipher over many pages in one pass
 * ({@link MemoryController.writePrivateMany}). The result is the same bytes and the same digest as
 * page by page, because the queue keeps the commands' order per guest and never holds two ranges
 * that share a byte (such a range flushes the queue first). The queue is flushed when the kernel's
 * loop ends ({@link SevFirmware.batch}) and before any other firmware command runs.
 */
import type { MemoryController, PhysRange } from './api.js';
import type { GuestContext } from './guest-context.js';

/** Queued bytes that make the queue flush: small enough that the pages are hashed and encrypted while in cache. */
const QUEUE_BYTES = 256 << 10;

interface Span {
  readonly buffer: ArrayBufferLike;
  start: number;
  end: number;
}

export class LaunchUpdateQueue {
  readonly #memory: MemoryController;
  #guest: GuestContext | null = null;
  #ranges: PhysRange[] = [];
  #bytes = 0;
  /** The byte span each backing buffer has in the queue (to refuse a range sharing a byte). */
  #spans = new Map<ArrayBufferLike, Span>();
  /** The span of the last range's buffer. */
  #last: Span | null = null;

  constructor(memory: MemoryController) {
    this.#memory = memory;
  }

  /** Queues the measurement and encryption of `range` for `guest` (its checks passed). */
  add(guest: GuestContext, range: PhysRange): void {
    const b = range.bytes;
    const start = b.byteOffset;
    const end = start + b.length;
    const last = this.#last;
    // The kernel's loop walks up through one buffer: a range at or past the last one's end is the common case.
    if (guest === this.#guest && this.#bytes < QUEUE_BYTES && last && last.buffer === b.buffer && start >= last.end) last.end = end;
    else {
      let span = this.#spans.get(b.buffer);
      if (guest !== this.#guest || this.#bytes >= QUEUE_BYTES || (span && start < span.end && end > span.start)) {
        this.flush();
        span = undefined;
      }
      this.#guest = guest;
      if (span) {
        span.start = Math.min(span.start, start);
        span.end = Math.max(span.end, end);
      } else {
        span = { buffer: b.buffer, start, end };
        this.#spans.set(b.buffer, span);
      }
      this.#last = span;
    }
    this.#ranges.push(range);
    this.#bytes += b.length;
  }

  /** Does the queued work: GCTX.LD over the plaintext in command order, then the encryption. */
  flush(): void {
    const g = this.#guest;
    const ranges = this.#ranges;
    if (!g || ranges.length === 0) return;
    this.#guest = null;
    this.#ranges = [];
    this.#bytes = 0;
    this.#spans.clear();
    this.#last = null;
    // Buffer-adjacent ranges (consecutive pages of a mapping) are hashed in one update.
    let buf: ArrayBufferLike = ranges[0]!.bytes.buffer;
    let start = ranges[0]!.bytes.byteOffset;
    let end = start;
    for (const { bytes } of ranges) {
      if (bytes.buffer === buf && bytes.byteOffset === end) {
        end += bytes.length;
        continue;
      }
      g.digest!.update(new Uint8Array(buf, start, end - start));
      buf = bytes.buffer;
      start = bytes.byteOffset;
      end = start + bytes.length;
    }
    g.digest!.update(new Uint8Array(buf, start, end - start));
    const m = this.#memory;
    if (m.writePrivateMany) m.writePrivateMany(ranges, g.vek);
    else for (const r of ranges) m.writePrivate(r, g.vek, r.bytes);
  }
}

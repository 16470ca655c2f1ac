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

/** Queued bytes that make the queue flush (a few MiB: the pages are hashed and encrypted while cached). */
const QUEUE_BYTES = 2 << 20;

export class LaunchUpdateQueue {
  readonly #memory: MemoryController;
  #guest: GuestContext | null = null;
  #ranges: PhysRange[] = [];
  #bytes = 0;
  /** The byte span each backing buffer has in the queue (to refuse a range sharing a byte). */
  #spans = new Map<ArrayBufferLike, { start: number; end: number }>();

  constructor(memory: MemoryController) {
    this.#memory = memory;
  }

  /** Queues the measurement and encryption of `range` for `guest` (its checks passed). */
  add(guest: GuestContext, range: PhysRange): void {
    const b = range.bytes;
    const start = b.byteOffset;
    const end = start + b.length;
    let span = this.#spans.get(b.buffer);
    if (guest !== this.#guest || this.#bytes >= QUEUE_BYTES || (span && start < span.end && end > span.start)) {
      this.flush();
      span = undefined;
    }
    this.#guest = guest;
    this.#ranges.push(range);
    this.#bytes += b.length;
    if (span) {
      span.start = Math.min(span.start, start);
      span.end = Math.max(span.end, end);
    } else this.#spans.set(b.buffer, { start, end });
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
    let run: Uint8Array | undefined;
    for (const { bytes } of ranges) {
      if (run && run.buffer === bytes.buffer && run.byteOffset + run.length === bytes.byteOffset) {
        run = new Uint8Array(run.buffer, run.byteOffset, run.length + bytes.length);
        continue;
      }
      if (run) g.digest!.update(run);
      run = bytes;
    }
    g.digest!.update(run!);
    const m = this.#memory;
    if (m.writePrivateMany) m.writePrivateMany(ranges, g.vek);
    else for (const r of ranges) m.writePrivate(r, g.vek, r.bytes);
  }
}

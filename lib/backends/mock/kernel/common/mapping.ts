/**
 * Guest memory of the mock: backing stores ("physical" pages) and the mappings that show them.
 *
 * An anonymous mapping has a backing of its own; every mapping of one memfd shows the memfd's
 * backing, so a write through one is seen through the others, as with MAP_SHARED. A backing is
 * ArrayBuffers of at most 1 GiB (one buffer when it is 4 GiB or less), because Node 20 cannot make
 * one ArrayBuffer alias part of another: `buffer` and `view()` hand out those buffers themselves,
 * live, and a range that is not a whole buffer is refused (ERR_KVM_SEV_MOCK_VIEW) rather than copied.
 * unmap() detaches what it handed out, except while another mapping of the same memfd still shows
 * the pages (then they stay readable through old views: a documented difference from munmap).
 */
import type { GuestMapping } from '../../../../backend/contract.js';
import { KvmSevError, errnoError } from '../../../../backend/errors.js';
import { PAGE_SIZE } from '../../../../uapi/constants.js';
import { invalidArgType, outOfRange } from '../../../../uapi/errors.js';

const GIB = 2 ** 30;
const FOUR_GIB = 2 ** 32;

/** Stable "physical" pages: the memory behind one anonymous mapping or one memfd. */
export class Backing {
  readonly id: number;
  /** Base of the backing's stable physical address range (documented in user-memory.ts). */
  readonly physBase: bigint;
  readonly size: number;
  readonly chunkSize: number;
  private chunks: ArrayBuffer[];
  /** Live mappings showing it. */
  mappings = 0;
  /** Open memfd files referring to it. */
  fileRefs = 0;

  constructor(id: number, size: number) {
    this.id = id;
    this.size = size;
    this.physBase = BigInt(id) << 40n;
    this.chunkSize = size <= FOUR_GIB ? size : GIB;
    this.chunks = [];
    for (let at = 0; at < size; at += this.chunkSize) this.chunks.push(new ArrayBuffer(Math.min(this.chunkSize, size - at)));
  }

  /** The chunk holding `offset`, and where in it. */
  locate(offset: number): { chunk: ArrayBuffer; index: number; at: number } {
    const index = Math.floor(offset / this.chunkSize);
    return { chunk: this.chunks[index]!, index, at: offset - index * this.chunkSize };
  }

  /** A live view of [offset, offset+length); it must not cross a chunk (callers split at chunkSize). */
  bytes(offset: number, length: number): Uint8Array {
    const { chunk, at } = this.locate(offset);
    return new Uint8Array(chunk, at, length);
  }

  /** The buffer exactly covering [offset, offset+length), if there is one. */
  exactChunk(offset: number, length: number): ArrayBuffer | undefined {
    if (offset % this.chunkSize !== 0) return undefined;
    const c = this.chunks[offset / this.chunkSize];
    return c && c.byteLength === length ? c : undefined;
  }

  /** Detach every view handed out, keeping the contents (zero-copy transfer). */
  rehome(): void {
    this.chunks = this.chunks.map((c) => structuredClone(c, { transfer: [c] }));
  }

  /** Detach and forget the memory. */
  free(): void {
    for (const c of this.chunks) structuredClone(c, { transfer: [c] });
    this.chunks = [];
  }
}

function checkSize(name: string, v: unknown): number {
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v !== 'number') throw invalidArgType(name, 'number or bigint', v);
  if (!Number.isSafeInteger(v) || v < 0) throw outOfRange(name, 'a safe integer >= 0', v);
  return v;
}

/** Like native: a non-zero multiple of 4096. */
export function pageAlignedSize(v: unknown): number {
  const n = checkSize('size', v);
  if (n === 0 || n % PAGE_SIZE !== 0) throw outOfRange('size', 'a non-zero multiple of 4096', v);
  return n;
}

/** A mapping made by the mock (mmapAnonymous / mmapShared). */
export class MockMapping implements GuestMapping {
  readonly backing: Backing;
  /** Offset of the mapping in its backing. */
  readonly offset: number;
  readonly size: number;
  /** Memory slots of live VMs that point here. */
  bindings = 0;
  /** Calls in flight using it. */
  inflight = 0;
  private unmapped = false;
  private readonly onUnmap: (m: MockMapping) => void;

  constructor(backing: Backing, offset: number, size: number, onUnmap: (m: MockMapping) => void) {
    this.backing = backing;
    this.offset = offset;
    this.size = size;
    this.onUnmap = onUnmap;
    backing.mappings++;
  }

  get closed(): boolean {
    return this.unmapped;
  }

  get buffer(): ArrayBuffer {
    if (this.unmapped) return new ArrayBuffer(0);
    if (this.size > FOUR_GIB)
      throw outOfRange('size', "<= 4 GiB for .buffer (Node 20's ArrayBuffer limit): use mapping.view(offset, length)", this.size);
    return this.view(0, this.size);
  }

  view(offset: number, length?: number): ArrayBuffer {
    const off = checkSize('offset', offset);
    const len = length === undefined ? Math.max(this.size - off, 0) : checkSize('length', length);
    if (this.unmapped) throw errnoError(14, 'mmap', undefined, 'the mapping was unmapped');
    if (off > this.size || len > this.size - off) {
      throw outOfRange('view', `a range inside the mapping of ${this.size} bytes`, `[${off}, +${len})`);
    }
    if (len > FOUR_GIB) throw outOfRange('length', "<= 4 GiB (Node 20's ArrayBuffer limit); use several views", len);
    const c = this.backing.exactChunk(this.offset + off, len);
    if (c) return c;
    throw new KvmSevError(
      'ERR_KVM_SEV_MOCK_VIEW',
      `the mock can hand out live memory only as whole buffers of its backing (${this.backing.chunkSize} bytes at ` +
        `multiples of it); [${off}, +${len}) of this mapping is not one: take a Uint8Array of mapping.buffer instead`,
    );
  }

  unmap(): void {
    if (this.unmapped) return;
    if (this.bindings > 0 || this.inflight > 0) {
      const e = errnoError(16, 'munmap');
      e.message =
        this.bindings > 0
          ? 'EBUSY: the mapping backs a memory slot of a live VM; delete the slot or close the VM first'
          : 'EBUSY: the mapping is used by an ioctl in flight';
      throw e;
    }
    this.unmapped = true;
    const b = this.backing;
    // The last mapping detaches its views; an open memfd keeps the contents (see the module comment).
    if (--b.mappings === 0) {
      if (b.fileRefs > 0) b.rehome();
      else b.free();
    }
    this.onUnmap(this);
  }
}

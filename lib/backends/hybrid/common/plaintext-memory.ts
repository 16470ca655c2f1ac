/**
 * The hybrid's memory controller. A real CPU without SEV executes the guest, so guest memory must
 * stay plaintext; this controller keeps plaintext in `range.bytes` and records which bytes are
 * private, under which VEK and at which tweak address, so that it can show what a real SEV host
 * would read there ({@link PlaintextMemory.hostView}: the same bytes the pure mock's
 * {@link CiphertextMemory} would hold) and answer reads under a wrong key or at a wrong address with
 * the garbage real hardware returns (docs/sev-reference.md §8).
 *
 * Private state is tracked per backing store (the ArrayBuffer under `range.bytes`), not per tweak
 * address, because two VMs may use the same guest-physical addresses.
 */
import { invalidArgType, invalidArgValue } from '../../../uapi/errors.js';
import { PrivateRuns } from './private-runs.js';
import { memoryCipher, checkPhysRange, type MemoryController, type PhysRange } from '../../mock/seam.js';

export class PlaintextMemory implements MemoryController {
  readonly storesCiphertext = false;
  #stores = new WeakMap<ArrayBufferLike, PrivateRuns>();
  /** Weak list of stores with private bytes, for look-ups by address. */
  #refs = new Set<WeakRef<ArrayBufferLike>>();
  #lastKey: Buffer | undefined;

  #runsOf(bytes: Uint8Array, create: true): PrivateRuns;
  #runsOf(bytes: Uint8Array, create: false): PrivateRuns | undefined;
  #runsOf(bytes: Uint8Array, create: boolean): PrivateRuns | undefined {
    let runs = this.#stores.get(bytes.buffer);
    if (!runs && create) {
      runs = new PrivateRuns();
      this.#stores.set(bytes.buffer, runs);
      this.#refs.add(new WeakRef(bytes.buffer));
    }
    return runs;
  }

  #keyCopy(vek: Uint8Array): Buffer {
    if (!(vek instanceof Uint8Array) || vek.length !== 16) throw invalidArgValue('vek', vek, 'must be a 16-byte key');
    if (this.#lastKey?.equals(vek)) return this.#lastKey;
    this.#lastKey = Buffer.from(vek);
    return this.#lastKey;
  }

  /** Keeps `plaintext` in memory (no copy when it is the range itself) and marks the bytes private. */
  writePrivate(range: PhysRange, vek: Uint8Array, plaintext: Uint8Array): void {
    const r = checkPhysRange('range', range);
    if (!(plaintext instanceof Uint8Array) || plaintext.length !== r.bytes.length) {
      throw invalidArgValue('plaintext', plaintext?.length, `must be a Uint8Array as long as the range (${r.bytes.length} bytes)`);
    }
    const key = this.#keyCopy(vek);
    if (plaintext.buffer !== r.bytes.buffer || plaintext.byteOffset !== r.bytes.byteOffset) r.bytes.set(plaintext);
    const off = r.bytes.byteOffset;
    this.#runsOf(r.bytes, true).set(off, off + r.bytes.length, key, r.paddr - BigInt(off));
  }

  /**
   * What a guest holding `vek` reads at `range`: the plaintext where the bytes are private under
   * `vek` at this address; elsewhere the decryption of what the DRAM would hold (garbage).
   */
  readPrivate(range: PhysRange, vek: Uint8Array): Uint8Array {
    const r = checkPhysRange('range', range);
    const key = this.#keyCopy(vek);
    const off = r.bytes.byteOffset;
    const base = r.paddr - BigInt(off);
    const runs = this.#runsOf(r.bytes, false);
    if (!runs) return memoryCipher(key, r.paddr, r.bytes);
    const out = Buffer.alloc(r.bytes.length);
    for (const seg of runs.segments(off, off + r.bytes.length)) {
      const plain = r.bytes.subarray(seg.start - off, seg.end - off);
      const at = base + BigInt(seg.start);
      if (seg.run && seg.run.base === base && seg.run.key.equals(key)) out.set(plain, seg.start - off);
      else out.set(memoryCipher(key, at, this.#physical(seg.run, seg.start, plain)), seg.start - off);
    }
    return out;
  }

  /** Writes `data` and marks the bytes shared. */
  writeShared(range: PhysRange, data: Uint8Array): void {
    const r = checkPhysRange('range', range);
    if (!(data instanceof Uint8Array) || data.length !== r.bytes.length) {
      throw invalidArgValue('data', data?.length, `must be a Uint8Array as long as the range (${r.bytes.length} bytes)`);
    }
    r.bytes.set(data);
    this.forget(r);
  }

  /** Marks the bytes of `range` shared without writing them (e.g. the guest converted or freed them). */
  forget(range: PhysRange): void {
    const r = checkPhysRange('range', range);
    const off = r.bytes.byteOffset;
    this.#runsOf(r.bytes, false)?.set(off, off + r.bytes.length, null, 0n);
  }

  /**
   * What a real SEV host reads at `range`: private bytes as the ciphertext the memory controller
   * would have written (at the address and under the key they were written with), shared bytes as
   * they are. A copy.
   */
  hostView(range: PhysRange): Uint8Array {
    const r = checkPhysRange('range', range);
    const out = Buffer.from(r.bytes);
    const runs = this.#runsOf(r.bytes, false);
    if (!runs) return out;
    const off = r.bytes.byteOffset;
    for (const seg of runs.segments(off, off + r.bytes.length)) {
      if (seg.run) out.set(this.#physical(seg.run, seg.start, r.bytes.subarray(seg.start - off, seg.end - off)), seg.start - off);
    }
    return out;
  }

  #physical(run: { key: Buffer; base: bigint } | null, start: number, plain: Uint8Array): Uint8Array {
    return run ? memoryCipher(run.key, run.base + BigInt(start), plain) : plain;
  }

  /**
   * Is this byte private? With a PhysRange: its first byte (exact, per backing store). With an
   * address: whether any tracked store has a private byte at that tweak address (guest-physical
   * addresses of different VMs can coincide: pass a range to disambiguate).
   */
  isPrivate(where: bigint | PhysRange): boolean {
    if (typeof where === 'bigint') {
      for (const ref of this.#refs) {
        const buf = ref.deref();
        if (!buf) {
          this.#refs.delete(ref);
          continue;
        }
        for (const run of this.#stores.get(buf)?.all() ?? []) {
          if (where >= run.base + BigInt(run.start) && where < run.base + BigInt(run.end)) return true;
        }
      }
      return false;
    }
    if (typeof where !== 'object' || where === null) throw invalidArgType('where', 'a bigint or a PhysRange', where);
    const r = checkPhysRange('where', where);
    const off = r.bytes.byteOffset;
    const seg = this.#runsOf(r.bytes, false)?.segments(off, off + 1)[0];
    return seg?.run != null;
  }
}

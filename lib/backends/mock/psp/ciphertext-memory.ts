/**
 * The pure mock's memory controller: private memory holds ciphertext, as DRAM does on real SEV
 * hardware (docs/sev-reference.md §8), so the host (and any test) reading `range.bytes` sees only
 * ciphertext. The cipher is {@link memoryCipher} (address-tweaked, per VEK).
 */
import { invalidArgType, invalidArgValue } from '../../../uapi/errors.js';
import type { MemoryController, PhysRange } from './api.js';
import { memoryCipher, memoryCipherInto, memoryCipherRangesInPlace } from './memory-cipher.js';
import { checkPhysRange } from './phys-range.js';

export class CiphertextMemory implements MemoryController {
  readonly storesCiphertext = true;

  /** Encrypts `plaintext` for `range.paddr` and stores it (one AES pass, one copy; `plaintext` may alias the range). */
  writePrivate(range: PhysRange, vek: Uint8Array, plaintext: Uint8Array): void {
    const r = checkPhysRange('range', range);
    if (!(plaintext instanceof Uint8Array) || plaintext.length !== r.bytes.length) {
      throw invalidArgValue('plaintext', plaintext?.length, `must be a Uint8Array as long as the range (${r.bytes.length} bytes)`);
    }
    memoryCipherInto(vek, r.paddr, plaintext, r.bytes); // in place, chunk by chunk: no copy of the range
  }

  /** {@link writePrivate} of each range's own bytes, in place: small ranges (4 KiB frames) share cipher passes. */
  writePrivateMany(ranges: readonly PhysRange[], vek: Uint8Array): void {
    if (!Array.isArray(ranges)) throw invalidArgType('ranges', 'an Array of PhysRanges', ranges);
    memoryCipherRangesInPlace(vek, ranges); // checks each range as it goes
  }

  /** What a guest holding `vek` reads: the stored bytes decrypted at their address. */
  readPrivate(range: PhysRange, vek: Uint8Array): Uint8Array {
    const r = checkPhysRange('range', range);
    return memoryCipher(vek, r.paddr, r.bytes);
  }

  writeShared(range: PhysRange, data: Uint8Array): void {
    const r = checkPhysRange('range', range);
    if (!(data instanceof Uint8Array) || data.length !== r.bytes.length) {
      throw invalidArgValue('data', data?.length, `must be a Uint8Array as long as the range (${r.bytes.length} bytes)`);
    }
    r.bytes.set(data);
  }

  /** What the host reads at `range`: the stored bytes as they are (a copy). */
  hostView(range: PhysRange): Uint8Array {
    return Buffer.from(checkPhysRange('range', range).bytes);
  }
}

/**
 * Binary stats fds (KVM_GET_STATS_FD; virt/kvm/binary_stats.c: kvm_stats_read()): a header, the id
 * string, the descriptors (each followed by its NUL-padded name) and the u64 values, laid out as
 * Documentation/virt/kvm/api.rst describes, read with pread at any offset. Values are read live.
 * The mock keeps only the counters it can know (its own exits count); the rest of the kernel's
 * long list is left out, and a reader finds stats by name, as the format intends.
 */
import { kvm_stats_desc, kvm_stats_header } from '../../../../uapi/vmm-structs.js';
import { KernelFile } from '../common/files.js';

/** KVM_STATS_NAME_SIZE */
export const KVM_STATS_NAME_SIZE = 48;

export interface MockStat {
  readonly name: string;
  /** KVM_STATS_TYPE_* | KVM_STATS_UNIT_* | KVM_STATS_BASE_* */
  readonly flags: number;
  value(): bigint;
}

export class StatsFile extends KernelFile {
  readonly kind = 'stats' as const;
  readonly path: string;
  override readonly writable = false;
  private readonly id: string;
  private readonly stats: readonly MockStat[];

  constructor(path: string, id: string, stats: readonly MockStat[]) {
    super();
    this.path = path;
    this.id = id;
    this.stats = stats;
  }

  /** The whole file as kvm_stats_read() would assemble it now. */
  contents(): Uint8Array {
    const n = this.stats.length;
    const idOff = kvm_stats_header.size;
    const descOff = idOff + KVM_STATS_NAME_SIZE;
    const descSize = kvm_stats_desc.size + KVM_STATS_NAME_SIZE;
    const dataOff = descOff + n * descSize;
    const out = new Uint8Array(dataOff + 8 * n);
    kvm_stats_header.encode(
      { flags: 0, name_size: KVM_STATS_NAME_SIZE, num_desc: n, id_offset: idOff, desc_offset: descOff, data_offset: dataOff },
      out,
      0,
    );
    out.set(new TextEncoder().encode(this.id).subarray(0, KVM_STATS_NAME_SIZE - 1), idOff);
    const dv = new DataView(out.buffer);
    this.stats.forEach((s, i) => {
      const at = descOff + i * descSize;
      kvm_stats_desc.encode({ flags: s.flags, exponent: 0, size: 1, offset: 8 * i, bucket_size: 0 }, out, at);
      out.set(new TextEncoder().encode(s.name).subarray(0, KVM_STATS_NAME_SIZE - 1), at + kvm_stats_desc.size);
      dv.setBigUint64(dataOff + 8 * i, s.value(), true);
    });
    return out;
  }

  /** pread(2): bytes from `pos`, 0 at or past the end. */
  pread(into: Uint8Array, pos: number): number {
    const all = this.contents();
    if (pos >= all.byteLength) return 0;
    const n = Math.min(into.byteLength, all.byteLength - pos);
    into.set(all.subarray(pos, pos + n));
    return n;
  }

  protected release(): void {}
}

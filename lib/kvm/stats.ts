/**
 * Binary statistics of a VM or vCPU (KVM_GET_STATS_FD), read without debugfs: exit counts, halt
 * polling, TLB flushes. The fd holds a header, the descriptors and the values
 * (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"); values are read fresh on every `read()`.
 *
 * ```ts
 * import { Kvm } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 *
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using vm = kvm.createVm();
 * const vcpu = vm.createVcpu(0);
 * using stats = vcpu.statsFd();
 * console.log(stats.id, stats.read().get('exits')); // kvm-<pid>/vcpu-0 0n
 * ```
 */
import type { Backend, BackendFd } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import { KVM_STATS_TYPE_MASK } from '../uapi/vmm-constants.js';
import { kvm_stats_desc, kvm_stats_header } from '../uapi/vmm-structs.js';
import * as ioc from '../uapi/ioctls.js';

export interface KvmStatDesc {
  readonly name: string;
  /** KVM_STATS_TYPE_* | KVM_STATS_UNIT_* | KVM_STATS_BASE_* */
  readonly flags: number;
  readonly type: number;
  readonly exponent: number;
  /** Number of u64 values (more than one for histograms). */
  readonly size: number;
  readonly offset: number;
  readonly bucketSize: number;
}

export class KvmStats implements Disposable {
  readonly backend: Backend;
  readonly fd: BackendFd;
  /** The id string ("kvm-<pid>" for a VM, "kvm-<pid>/vcpu-<n>" for a vCPU). */
  readonly id: string;
  readonly descriptors: readonly KvmStatDesc[];
  private readonly dataOffset: number;
  private readonly dataSize: number;

  /**
   * @internal KVM_GET_STATS_FD on a VM or vCPU fd, read as stats; the new fd is closed if its header
   * does not decode. Use {@link Vm.statsFd} or {@link Vcpu.statsFd}.
   */
  static open(backend: Backend, owner: BackendFd): KvmStats {
    const fd = backend.ioctlFd(owner, ioc.KVM_GET_STATS_FD);
    try {
      return new KvmStats(backend, fd);
    } catch (e) {
      fd.close();
      throw e;
    }
  }

  /** @internal use {@link Vm.statsFd} or {@link Vcpu.statsFd}. */
  constructor(backend: Backend, fd: BackendFd) {
    this.backend = backend;
    this.fd = fd;
    const h = kvm_stats_header.decode(this.readAt(0, kvm_stats_header.size));
    if (h.name_size === 0 || h.name_size > 4096)
      throw new KvmSevError('ERR_KVM_SEV_STATS', `unexpected stats header (name_size ${h.name_size})`);
    this.id = cString(this.readAt(h.id_offset, h.name_size));
    const stride = kvm_stats_desc.size + h.name_size;
    const raw = this.readAt(h.desc_offset, stride * h.num_desc);
    const descs: KvmStatDesc[] = [];
    let end = 0;
    for (let i = 0; i < h.num_desc; i++) {
      const d = kvm_stats_desc.decode(raw, i * stride);
      const exponent = (d.exponent << 16) >> 16; // __s16
      descs.push({
        name: cString(raw.subarray(i * stride + kvm_stats_desc.size, (i + 1) * stride)),
        flags: d.flags,
        type: d.flags & KVM_STATS_TYPE_MASK,
        exponent,
        size: d.size,
        offset: d.offset,
        bucketSize: d.bucket_size,
      });
      end = Math.max(end, d.offset + 8 * d.size);
    }
    this.descriptors = descs;
    this.dataOffset = h.data_offset;
    this.dataSize = end;
  }

  private readAt(pos: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const n = this.backend.pread(this.fd, b.subarray(got), pos + got);
      if (n === 0) throw new KvmSevError('ERR_KVM_SEV_STATS', `the stats fd ended at ${pos + got}, expected ${pos + len}`);
      got += n;
    }
    return b;
  }

  /** Every stat by name: a bigint, or an array for histograms (size > 1). */
  read(): Map<string, bigint | bigint[]> {
    const data = this.readAt(this.dataOffset, this.dataSize);
    const dv = new DataView(data.buffer);
    const out = new Map<string, bigint | bigint[]>();
    for (const d of this.descriptors) {
      const vals = Array.from({ length: d.size }, (_, i) => dv.getBigUint64(d.offset + 8 * i, true));
      out.set(d.name, d.size === 1 ? vals[0]! : vals);
    }
    return out;
  }

  close(): void {
    this.fd.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
}

function cString(b: Uint8Array): string {
  const z = b.indexOf(0);
  return new TextDecoder().decode(z < 0 ? b : b.subarray(0, z));
}

/**
 * What the mock host answers where a diagnosis reads the real host (/sys/module/kvm_amd/parameters,
 * RLIMIT_MEMLOCK, CAP_IPC_LOCK, the device nodes, CPU flags): from its options, so `kvm-sev doctor`
 * tells the same story on the mock. kvm_amd rewrites its sev / sev_es / sev_snp parameters at setup to
 * what is really usable (arch/x86/kvm/svm/sev.c: sev_hardware_setup()), and so does this view.
 */
import type { CpuInfo, DeviceAccess, SystemView } from '../../backend/system-view.js';
import type { ResolvedOptions } from './options.js';
import { SIGNATURE } from './kernel/kvm/tables.js';

/** Family, model and stepping from a CPUID Fn0000_0001_EAX signature (AMD CPUID spec, pub. 25481). */
function decodeSignature(sig: number): Pick<CpuInfo, 'family' | 'model' | 'stepping'> {
  const base = (sig >> 8) & 0xf;
  const family = base === 0xf ? base + ((sig >> 20) & 0xff) : base;
  const model = base === 0xf ? (((sig >> 16) & 0xf) << 4) | ((sig >> 4) & 0xf) : (sig >> 4) & 0xf;
  return { family, model, stepping: sig & 0xf };
}

export class MockSystemView implements SystemView {
  private readonly o: Readonly<ResolvedOptions>;
  private readonly usable: { sev: boolean; es: boolean; snp: boolean };

  constructor(o: Readonly<ResolvedOptions>, usable: { sev: boolean; es: boolean; snp: boolean }) {
    this.o = o;
    this.usable = usable;
  }

  kvmAmdParam(name: string): string | undefined {
    const yn = (b: boolean) => (b ? 'Y' : 'N');
    switch (name) {
      case 'sev':
        return yn(this.usable.sev);
      case 'sev_es':
        return yn(this.usable.es);
      case 'sev_snp':
        return this.o.kernel === 'local-migration-2021' ? undefined : yn(this.usable.snp);
      case 'debug_swap':
        return this.o.kernel === '6.12' ? yn(this.usable.es) : undefined;
      case 'ciphertext_hiding_asids':
        return this.o.kernel === '7.2' ? '0' : undefined;
      case 'npt':
      case 'nrips':
        return 'Y';
      default:
        return undefined;
    }
  }

  kvmModules(): string[] {
    return ['kvm', 'kvm_amd'];
  }

  memlockLimit(): bigint | 'unlimited' {
    return this.o.memlock.limit;
  }

  capIpcLock(): boolean {
    return this.o.memlock.capIpcLock;
  }

  device(path: string): DeviceAccess {
    const exists = path === '/dev/kvm' || (path === '/dev/sev' && this.usable.sev);
    return exists
      ? { path, exists, readable: true, writable: true, mode: path === '/dev/kvm' ? 'crw-rw----' : 'crw-------', uid: 0, gid: 0 }
      : { path, exists: false, readable: false, writable: false };
  }

  cpuFlags(): Set<string> {
    const f = ['fpu', 'sse', 'sse2', 'avx', 'svm', 'npt', 'nrip_save', 'lbrv', 'sme'];
    if (this.usable.sev) f.push('sev');
    if (this.usable.es) f.push('sev_es');
    if (this.usable.snp) f.push('sev_snp');
    return new Set(f);
  }

  cpuInfo(): CpuInfo {
    // The same signature as the mock KVM's CPUID leaf 1, and its brand string (leaf 0x80000002).
    const name = this.o.processor.name;
    return { vendor: 'AuthenticAMD', ...decodeSignature(SIGNATURE[name]), modelName: `AMD EPYC-MOCK (kvm-sev mock, ${name} profile)` };
  }

  /** The kernel profile the mock models, marked as such. */
  kernelRelease(): string {
    return `${this.o.kernel} (kvm-sev mock kernel profile)`;
  }
}

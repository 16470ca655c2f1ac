/**
 * What the mock host answers where a diagnosis reads the real host (/sys/module/kvm_amd/parameters,
 * RLIMIT_MEMLOCK, CAP_IPC_LOCK, the device nodes, CPU flags): from its options, so `kvm-sev doctor`
 * tells the same story on the mock. kvm_amd rewrites its sev / sev_es / sev_snp parameters at setup to
 * what is really usable (arch/x86/kvm/svm/sev.c: sev_hardware_setup()), and so does this view.
 */
import type { DeviceAccess, SystemView } from '../../backend/system-view.js';
import type { ResolvedOptions } from './options.js';

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
}

/**
 * Choosing a backend: native where /dev/kvm and SEV both work, hybrid (real KVM, mocked SEV) where
 * only /dev/kvm works, and the mock everywhere else; or the one you name. It says which, and why
 * (see {@link openHost}).
 */
import type { Backend, BackendName } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import { NativeBackend } from '../backends/native/native-backend.js';
import type { MockHostOptions } from '../backends/mock/options.js'; // types only: the mock loads when chosen
import { invalidArgValue } from '../uapi/errors.js';
import * as ioc from '../uapi/ioctls.js';

export interface OpenHostOptions {
  /** Force a backend; default: the best that works here. */
  backend?: BackendName;
  /** Options of the mock (and of the hybrid's mocked SEV): kernel and processor profiles, memlock, faults, trace. */
  mock?: MockHostOptions;
  /** The hybrid's own options (e.g. its EMULATED hypercall doorbell, for hosts whose KVM swallows VMMCALL). */
  hybrid?: { emulateHypercalls?: { port: number } };
}

export interface OpenedHost {
  readonly name: BackendName;
  readonly backend: Backend;
  /** Why this backend (a sentence for people). */
  readonly reason: string;
}

interface Probe {
  kvm: boolean;
  sev: boolean;
  why: string;
}

/** What the native side can do here, without side effects beyond a throwaway VM. */
function probeNative(): Probe {
  let native: NativeBackend;
  try {
    native = new NativeBackend();
  } catch (e) {
    return { kvm: false, sev: false, why: (e as Error).message };
  }
  let kvm;
  try {
    kvm = native.open('/dev/kvm');
  } catch (e) {
    return { kvm: false, sev: false, why: `/dev/kvm cannot be opened (${(e as { code?: string }).code ?? (e as Error).message})` };
  }
  try {
    const vm = native.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    try {
      native.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP); // the NULL probe: 0 with SEV, ENOTTY without
    } catch (e) {
      return {
        kvm: true,
        sev: false,
        why: `/dev/kvm works, but KVM answers ${(e as { code?: string }).code} to SEV commands (no SEV on this host)`,
      };
    } finally {
      vm.close();
    }
    try {
      native.open('/dev/sev').close();
    } catch (e) {
      return {
        kvm: true,
        sev: false,
        why: `/dev/kvm and KVM's SEV work, but /dev/sev cannot be opened (${(e as { code?: string }).code})`,
      };
    }
    return { kvm: true, sev: true, why: '/dev/kvm and SEV both work' };
  } catch (e) {
    return { kvm: false, sev: false, why: `KVM_CREATE_VM failed (${(e as { code?: string }).code ?? (e as Error).message})` };
  } finally {
    kvm.close();
  }
}

/**
 * Opens the best backend here, or the one named, and says which and why: native where /dev/kvm and
 * SEV both work, hybrid (real KVM, mocked SEV) where only /dev/kvm works, the mock everywhere else.
 * The mock and the hybrid are loaded only when chosen, so a host with SEV never loads them.
 *
 * ```ts
 * import { Kvm, openHost } from 'kvm-sev';
 * const host = await openHost(); // or openHost({ backend: 'mock', mock: { processor: 'genoa' } })
 * console.log(host.name, '-', host.reason); // e.g. "hybrid - /dev/kvm works, but KVM answers ENOTTY to SEV commands (no SEV on this host)"
 * using kvm = Kvm.open({ backend: host.backend });
 * console.log(kvm.apiVersion()); // 12
 * ```
 */
export async function openHost(options: OpenHostOptions = {}): Promise<OpenedHost> {
  const want = options.backend;
  if (want !== undefined && want !== 'native' && want !== 'hybrid' && want !== 'mock') {
    throw invalidArgValue('options.backend', want, "must be 'native', 'hybrid' or 'mock'");
  }
  const mock = async (): Promise<Backend> => new (await import('../backends/mock/mock-host.js')).MockHost(options.mock);
  const hybrid = async (): Promise<Backend> =>
    new (await import('../backends/hybrid/hybrid-backend.js')).HybridBackend({ ...options.mock, ...options.hybrid });
  if (want === 'mock') return { name: 'mock', backend: await mock(), reason: 'asked for the mock' };
  const p = probeNative();
  if (want === 'native') {
    if (!p.kvm) throw new KvmSevError('ERR_KVM_SEV_NO_KVM', `the native backend needs a usable /dev/kvm: ${p.why}`);
    return { name: 'native', backend: new NativeBackend(), reason: `asked for native; ${p.why}` };
  }
  if (want === 'hybrid') {
    if (!p.kvm) throw new KvmSevError('ERR_KVM_SEV_NO_KVM', `the hybrid backend needs a usable /dev/kvm: ${p.why}`);
    return { name: 'hybrid', backend: await hybrid(), reason: `asked for hybrid; ${p.why}` };
  }
  if (p.sev) return { name: 'native', backend: new NativeBackend(), reason: p.why };
  if (p.kvm) return { name: 'hybrid', backend: await hybrid(), reason: `${p.why}: real KVM with mocked SEV` };
  return { name: 'mock', backend: await mock(), reason: `${p.why}: everything mocked` };
}

/**
 * The capability probe behind `kvm-sev doctor`: what this host (or backend) can do for SEV guests,
 * one line per fact, each saying what it means and what to do about it.
 *
 * ```ts
 * import { NativeBackend, probeCapabilities } from 'kvm-sev';
 * const report = await probeCapabilities(new NativeBackend(), { guestSize: 2n ** 30n });
 * for (const l of report.lines) console.log(l.status, l.title, l.value, l.meaning, l.action ?? '');
 * ```
 */
import type { Backend } from '../backend/contract.js';
import type { SystemView } from '../backend/system-view.js';
import { Kvm } from '../kvm/kvm.js';
import { KVM_CAP, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES, vmTypeName } from '../uapi/constants.js';
import { SevGuestCommands } from './kvm-sev-commands.js';
import { SevPlatform } from './platform.js';

export type CapabilityStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface CapabilityLine {
  id: string;
  status: CapabilityStatus;
  title: string;
  value: string;
  meaning: string;
  action?: string;
}

export interface CapabilityReport {
  backend: string;
  lines: CapabilityLine[];
  /** What the probe concluded. */
  kvm: boolean;
  sev: boolean;
  sevEs: boolean;
  snp: boolean;
  init2: boolean;
  vmTypes: string[];
  cpuid: { sev: boolean; sevEs: boolean; snp: boolean; cbit: number; asids: number; minSevAsid: number } | null;
}

export interface ProbeOptions {
  /** Guest memory you plan to pin (REG_REGION), for the RLIMIT_MEMLOCK check. Default 1 GiB. */
  guestSize?: bigint | number;
}

const fmtBytes = (n: bigint): string =>
  n >= 1n << 30n ? `${Number(n) / 2 ** 30} GiB` : n >= 1n << 20n ? `${Number(n) / 2 ** 20} MiB` : `${n} bytes`;

export async function probeCapabilities(backend: Backend, options: ProbeOptions = {}): Promise<CapabilityReport> {
  const sys: SystemView = backend.system;
  const lines: CapabilityLine[] = [];
  const add = (l: CapabilityLine) => lines.push(l);
  const report: CapabilityReport = {
    backend: backend.name,
    lines,
    kvm: false,
    sev: false,
    sevEs: false,
    snp: false,
    init2: false,
    vmTypes: [],
    cpuid: null,
  };

  // /dev/kvm
  const kdev = sys.device('/dev/kvm');
  let kvm: Kvm | undefined;
  try {
    kvm = Kvm.open({ backend });
    report.kvm = true;
    add({
      id: 'kvm',
      status: 'ok',
      title: '/dev/kvm',
      value: `${kdev.mode ?? 'open'}, API ${kvm.apiVersion()}`,
      meaning: 'KVM is usable by this process.',
    });
  } catch (e) {
    const err = e as { code?: string; message: string };
    add({
      id: 'kvm',
      status: 'fail',
      title: '/dev/kvm',
      value: err.code ?? 'error',
      meaning: kdev.exists
        ? `KVM is present but cannot be opened (${err.message}).`
        : 'There is no /dev/kvm: no KVM module is loaded, or this is not a Linux host.',
      action: kdev.exists
        ? 'Give this user read-write access: add it to the group owning /dev/kvm (usually "kvm") and log in again.'
        : 'Load kvm_amd (modprobe kvm_amd) on an AMD host with SVM enabled in the firmware, or use the mock backend.',
    });
  }

  // kvm_amd parameters
  const mods = sys.kvmModules();
  const param = (n: string) => sys.kvmAmdParam(n);
  if (!mods.includes('kvm_amd')) {
    add({
      id: 'kvm_amd',
      status: 'warn',
      title: 'kvm_amd',
      value: mods.length ? `not loaded (loaded: ${mods.join(', ')})` : 'not loaded',
      meaning: 'SEV needs the AMD KVM module.',
      action: 'modprobe kvm_amd sev=1 sev_es=1 on an AMD EPYC host.',
    });
  }
  for (const p of ['sev', 'sev_es', 'sev_snp']) {
    const v = param(p);
    if (v === undefined) continue;
    const on = v === 'Y' || v === '1';
    add({
      id: `kvm_amd.${p}`,
      status: on ? 'ok' : 'warn',
      title: `kvm_amd ${p}`,
      value: v,
      meaning: on
        ? `KVM offers ${p.toUpperCase().replace('_', '-')} guests.`
        : `KVM does not offer ${p.toUpperCase().replace('_', '-')} guests (the module rewrites this to what works).`,
      ...(on
        ? {}
        : {
            action: `Enable it in the BIOS (SME/SEV, and the SEV-ES ASID space) and load kvm_amd with ${p}=1; check dmesg for "SEV" lines.`,
          }),
    });
  }

  if (kvm) {
    try {
      // CPUID 0x8000001F as KVM passes it to guests (zero when KVM has no SEV).
      const leaf = kvm.supportedCpuid().find((e) => e.function === 0x8000001f);
      const eax = leaf?.eax ?? 0;
      const c = {
        sev: (eax & 2) !== 0,
        sevEs: (eax & 8) !== 0,
        snp: (eax & 16) !== 0,
        cbit: (leaf?.ebx ?? 0) & 0x3f,
        asids: leaf?.ecx ?? 0,
        minSevAsid: leaf?.edx ?? 0,
      };
      report.cpuid = c;
      add({
        id: 'cpuid',
        status: c.sev ? 'ok' : 'warn',
        title: 'CPUID 0x8000001F',
        value: c.sev
          ? `SEV${c.sevEs ? ' SEV-ES' : ''}${c.snp ? ' SEV-SNP' : ''}, C-bit ${c.cbit}, ${c.asids} ASIDs, min SEV ASID ${c.minSevAsid}`
          : 'no SEV',
        meaning: c.sev
          ? `Guests get the C-bit at position ${c.cbit}; ASIDs ${c.minSevAsid}..${c.asids} are for SEV guests${c.minSevAsid > 1 ? `, 1..${c.minSevAsid - 1} for SEV-ES` : ' (none left for SEV-ES)'}.`
          : 'KVM passes no SEV leaf through: the CPU lacks SEV, it is disabled in the firmware, or kvm_amd has sev=0.',
        ...(c.sev ? {} : { action: 'On an EPYC host enable SME and SEV in the BIOS; otherwise use the hybrid or mock backend.' }),
      });
      if (c.sev && c.minSevAsid <= 1) {
        add({
          id: 'asids.es',
          status: 'warn',
          title: 'SEV-ES ASIDs',
          value: '0',
          meaning: 'No ASIDs are set aside for SEV-ES guests.',
          action: 'Set "SEV-ES ASID space limit" in the BIOS above 1.',
        });
      }

      // VM types and INIT2
      const mask = kvm.checkExtension(KVM_CAP.VM_TYPES);
      const types = kvm.supportedVmTypes();
      report.vmTypes = types.map((t) => vmTypeName(t) ?? String(t));
      report.init2 = types.some((t) => t === 2 || t === 3);
      add({
        id: 'vm-types',
        status: 'info',
        title: 'VM types',
        value: report.vmTypes.join(', ') + (mask === 0 ? ' (no KVM_CAP_VM_TYPES: a kernel before 6.10)' : ''),
        meaning: report.init2
          ? 'The kernel creates SEV VMs by type and initialises them with KVM_SEV_INIT2 (6.10+).'
          : 'Only the legacy KVM_SEV_INIT / ES_INIT on a default VM are available here (no INIT2).',
      });

      // The KVM_MEMORY_ENCRYPT_OP probe on a throwaway VM.
      const vm = kvm.createVm();
      try {
        report.sev = new SevGuestCommands(vm).isEnabled();
      } finally {
        vm.close();
      }
      report.sevEs = report.sev && c.sevEs && (param('sev_es') ?? 'Y') !== 'N';
      report.snp = report.sev && c.snp && (param('sev_snp') ?? 'N') === 'Y';
      add({
        id: 'sev-enabled',
        status: report.sev ? 'ok' : 'warn',
        title: 'KVM_MEMORY_ENCRYPT_OP',
        value: report.sev ? 'enabled' : 'ENOTTY',
        meaning: report.sev ? 'KVM accepts SEV commands.' : 'KVM answers ENOTTY to SEV commands: SEV is not enabled in this kernel.',
        ...(report.sev ? {} : { action: 'Use `openHost({ backend: "hybrid" })` (real KVM, mocked SEV) to develop here.' }),
      });
      if (report.sev) {
        try {
          const f = kvm.deviceAttr(KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES);
          add({
            id: 'vmsa-features',
            status: 'info',
            title: 'SEV-ES VMSA features',
            value: `0x${f.toString(16)}`,
            meaning: 'The vmsa_features INIT2 accepts (DEBUG_SWAP is bit 5).',
          });
        } catch {
          /* kernels before 6.10 do not have the attribute */
        }
      }
    } finally {
      kvm.close();
    }
  }

  // RLIMIT_MEMLOCK against the planned guest
  const want = BigInt(options.guestSize ?? 1n << 30n);
  const limit = sys.memlockLimit();
  const cap = sys.capIpcLock();
  const enough = cap || limit === 'unlimited' || limit >= want;
  add({
    id: 'memlock',
    status: enough ? 'ok' : 'warn',
    title: 'RLIMIT_MEMLOCK',
    value: `${limit === 'unlimited' ? 'unlimited' : fmtBytes(limit)}${cap ? ' (CAP_IPC_LOCK: not enforced)' : ''}`,
    meaning: enough
      ? `Registering ${fmtBytes(want)} of guest memory (KVM_MEMORY_ENCRYPT_REG_REGION pins it) fits.`
      : `Registering ${fmtBytes(want)} of guest memory would fail with ENOMEM: KVM pins SEV guest memory and charges it to this limit.`,
    ...(enough
      ? {}
      : {
          action: `Raise it: \`ulimit -l ${Number(want / 1024n)}\` (KiB), LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf, or grant CAP_IPC_LOCK.`,
        }),
  });

  // /dev/sev
  const sdev = sys.device('/dev/sev');
  if (!sdev.exists) {
    add({
      id: 'dev-sev',
      status: report.sev ? 'fail' : 'info',
      title: '/dev/sev',
      value: 'absent',
      meaning: 'No SEV firmware device: platform commands (status, PDH export) are unavailable.',
      action: 'Load the ccp module (modprobe ccp) on an SEV host.',
    });
  } else {
    let plat: SevPlatform | undefined;
    try {
      plat = SevPlatform.open(backend, { write: false });
      const st = await plat.platformStatus();
      add({
        id: 'dev-sev',
        status: sdev.writable ? 'ok' : 'warn',
        title: '/dev/sev',
        value: `${sdev.mode ?? ''} firmware API ${st.apiMajor}.${st.apiMinor} build ${st.build}, state ${st.stateName}, ${st.guestCount} guests${st.configEs ? ', SEV-ES initialised' : ''}`,
        meaning: sdev.writable
          ? 'This process can issue platform commands.'
          : 'Read-only: status works, but PEK/PDH generation and LAUNCH_START (which passes this fd) need write access.',
        ...(sdev.writable ? {} : { action: 'Give this user write access to /dev/sev (a udev rule, or the group owning it).' }),
      });
    } catch (e) {
      const err = e as { code?: string; message: string; hint?: string };
      add({
        id: 'dev-sev',
        status: 'fail',
        title: '/dev/sev',
        value: err.code ?? 'error',
        meaning: err.message,
        ...(err.hint ? { action: err.hint } : {}),
      });
    } finally {
      plat?.close();
    }
  }
  return report;
}

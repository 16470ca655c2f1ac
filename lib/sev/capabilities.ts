/**
 * The capability probe behind `kvm-sev doctor`: what a host (or backend) can do for SEV guests,
 * one line per fact, each saying what it means and what to do about it.
 *
 * ```ts
 * import { checkRequirement, NativeBackend, probeCapabilities } from 'kvm-sev';
 * const report = await probeCapabilities(new NativeBackend(), { guestSize: 2n ** 30n });
 * for (const l of report.lines) console.log(l.status, l.title, l.value, l.meaning, l.action ?? '');
 * const sev = checkRequirement(report, 'sev'); // { met, why }: what `kvm-sev doctor --require sev` exits on
 * console.log(sev.met ? 'SEV here' : `no SEV here: ${sev.why}`);
 * ```
 *
 * Every fact comes from what is probed: the backend's SystemView (sysfs, procfs, the device nodes)
 * and its KVM. Probing a mock or hybrid backend gives what that backend emulates, not facts of the
 * host; `report.backend` says which.
 */
import type { Backend } from '../backend/contract.js';
import type { CpuInfo, SystemView } from '../backend/system-view.js';
import { Kvm } from '../kvm/kvm.js';
import { KVM_CAP, KVM_X86_GRP_SEV, KVM_X86_SEV_VMSA_FEATURES, KVM_VM_TYPE, vmTypeName } from '../uapi/constants.js';
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

/**
 * Which KVM this is: AMD SVM or Intel VT-x, on bare metal or nested under another hypervisor, or
 * PVM (kvm_pvm), a paravirtualised KVM that needs no hardware virtualisation.
 */
export type KvmKind = 'svm' | 'nested-svm' | 'vmx' | 'nested-vmx' | 'pvm' | 'none';

export interface KvmFlavour {
  kind: KvmKind;
  /** The loaded KVM modules (/sys/module/kvm*). */
  modules: string[];
  /** The CPU shows the hypervisor flag: this host is itself a virtual machine. */
  underHypervisor: boolean;
}

/** The processor as the host kernel shows it in /proc/cpuinfo (its view of CPUID). */
export interface HostCpu {
  identity: CpuInfo | null;
  hypervisor: boolean;
  svm: boolean;
  vmx: boolean;
  sev: boolean;
  sevEs: boolean;
  snp: boolean;
}

export interface CapabilityReport {
  /** What was probed: 'native' (the host), 'mock' or 'hybrid' (what they emulate), or 'none' (no backend: facts of the SystemView only). */
  backend: string;
  lines: CapabilityLine[];
  /** What the probe concluded. */
  kvm: boolean;
  /** KVM accepts SEV commands (KVM_MEMORY_ENCRYPT_OP). */
  sev: boolean;
  sevEs: boolean;
  snp: boolean;
  init2: boolean;
  /** /dev/sev opened and answered PLATFORM_STATUS. */
  sevPlatform: boolean;
  vmTypes: string[];
  /** CPUID 0x8000001F as KVM_GET_SUPPORTED_CPUID reports it (what KVM can give guests). */
  cpuid: { sev: boolean; sevEs: boolean; snp: boolean; cbit: number; asids: number; minSevAsid: number } | null;
  /** The running kernel's release. */
  kernel: string;
  cpu: HostCpu;
  kvmFlavour: KvmFlavour;
}

export interface ProbeOptions {
  /** Guest memory you plan to pin (REG_REGION), for the RLIMIT_MEMLOCK check. Default 1 GiB. */
  guestSize?: bigint | number;
}

/**
 * A host without a usable backend (the native addon did not load): only the facts its SystemView
 * gives can be probed, and `unavailable` says why KVM itself was not.
 */
export interface SystemOnlyTarget {
  readonly system: SystemView;
  readonly unavailable: string;
}

/** What `kvm-sev doctor --require` checks. */
export const REQUIREMENTS = ['kvm', 'sev', 'sev-es', 'snp'] as const;
export type Requirement = (typeof REQUIREMENTS)[number];

const fmtBytes = (n: bigint): string =>
  n >= 1n << 30n ? `${Number(n) / 2 ** 30} GiB` : n >= 1n << 20n ? `${Number(n) / 2 ** 20} MiB` : `${n} bytes`;

const VENDOR_MODULES = ['kvm_amd', 'kvm_intel', 'kvm_pvm'];

function hostCpu(sys: SystemView): HostCpu {
  const f = sys.cpuFlags();
  return {
    identity: sys.cpuInfo() ?? null,
    hypervisor: f.has('hypervisor'),
    svm: f.has('svm'),
    vmx: f.has('vmx'),
    sev: f.has('sev'),
    sevEs: f.has('sev_es'),
    snp: f.has('sev_snp'),
  };
}

function flavourOf(mods: string[], cpu: HostCpu): KvmFlavour {
  const under = cpu.hypervisor;
  const kind: KvmKind = mods.includes('kvm_pvm')
    ? 'pvm'
    : mods.includes('kvm_amd')
      ? under
        ? 'nested-svm'
        : 'svm'
      : mods.includes('kvm_intel')
        ? under
          ? 'nested-vmx'
          : 'vmx'
        : 'none';
  return { kind, modules: mods, underHypervisor: under };
}

function flavourLine(k: KvmFlavour, cpu: HostCpu): CapabilityLine {
  const hostDev = 'run on a bare-metal AMD EPYC host with kvm_amd; to develop here, use the hybrid backend (real KVM, mocked SEV)';
  switch (k.kind) {
    case 'pvm':
      return {
        id: 'kvm-flavour',
        status: 'warn',
        title: 'KVM',
        value: `kvm_pvm (PVM, paravirtualised${k.underHypervisor ? ', inside a VM' : ''})`,
        meaning:
          `PVM runs guests without hardware virtualisation${cpu.svm || cpu.vmx ? '' : ' (this CPU shows no svm or vmx flag)'}. ` +
          "What it cannot run directly goes through KVM's instruction emulator, which limits what guests can run: " +
          'small real-mode programs (kvm-sev hello, the demo guest) run; firmware such as OVMF or an unmodified kernel may not. PVM has no SEV.',
        action: `For SEV guests ${hostDev}.`,
      };
    case 'nested-svm':
      return {
        id: 'kvm-flavour',
        status: 'warn',
        title: 'KVM',
        value: 'kvm_amd, nested (this host is a VM)',
        meaning:
          'KVM runs on the SVM its own hypervisor virtualises. KVM does not offer SEV to a nested hypervisor: SEV guests need the bare-metal host.',
        action: `For SEV guests ${hostDev}.`,
      };
    case 'svm':
      return {
        id: 'kvm-flavour',
        status: 'ok',
        title: 'KVM',
        value: 'kvm_amd (AMD SVM, bare metal)',
        meaning: 'Hardware virtualisation by AMD SVM; whether it offers SEV is in the lines below.',
      };
    case 'vmx':
    case 'nested-vmx':
      return {
        id: 'kvm-flavour',
        status: 'warn',
        title: 'KVM',
        value: `kvm_intel (Intel VT-x${k.kind === 'nested-vmx' ? ', nested: this host is a VM' : ''})`,
        meaning: 'SEV is AMD technology: an Intel host runs no SEV guests.',
        action: 'Use an AMD EPYC host for SEV guests; the hybrid backend (real KVM, mocked SEV) works here.',
      };
    case 'none':
      return {
        id: 'kvm-flavour',
        status: 'warn',
        title: 'KVM',
        value: k.modules.length ? `no vendor module (loaded: ${k.modules.join(', ')})` : 'no KVM module loaded',
        meaning: 'Without kvm_amd (or another vendor module) there is no /dev/kvm to run guests on.',
        action: cpu.svm ? 'modprobe kvm_amd' : 'Use an AMD host with SVM enabled in the BIOS, or the mock backend.',
      };
  }
}

function hostLine(kernel: string, cpu: HostCpu): CapabilityLine {
  const id = cpu.identity;
  return {
    id: 'host',
    status: 'info',
    title: 'host',
    value:
      `Linux ${kernel}` +
      (id ? `, ${id.vendor} family ${id.family} model ${id.model} stepping ${id.stepping}${id.modelName ? ` (${id.modelName})` : ''}` : ''),
    meaning: cpu.hypervisor
      ? 'A virtual machine: the CPU shows the hypervisor flag, so KVM here is nested or paravirtualised.'
      : 'Bare metal: the CPU does not show the hypervisor flag.',
  };
}

function cpuFlagsLine(cpu: HostCpu): CapabilityLine {
  const yn = (name: string, b: boolean) => `${name} ${b ? 'yes' : 'no'}`;
  const amd = cpu.identity === null || cpu.identity.vendor === 'AuthenticAMD';
  return {
    id: 'cpu-flags',
    status: cpu.sev ? 'ok' : 'warn',
    title: 'CPU flags',
    value: [yn('svm', cpu.svm), yn('sev', cpu.sev), yn('sev_es', cpu.sevEs), yn('sev_snp', cpu.snp)].join(', '),
    meaning: cpu.sev
      ? "The host kernel found SEV enabled in the CPU (/proc/cpuinfo, the kernel's view of CPUID 0x8000001F)."
      : !amd
        ? 'Not an AMD processor: no SEV.'
        : cpu.hypervisor
          ? 'The CPU this VM sees has no SEV: a virtual machine cannot host SEV guests.'
          : 'The kernel shows no sev flag: the CPU lacks SEV, or the BIOS left SME/SEV off (arch/x86/kernel/cpu/amd.c: early_detect_mem_encrypt() then clears the flags).',
    ...(cpu.sev || !amd || cpu.hypervisor ? {} : { action: 'Enable SME and SEV (and the SEV-ES ASID space) in the BIOS.' }),
  };
}

/**
 * Probes a backend: its host facts (SystemView) and its KVM. A {@link SystemOnlyTarget} probes the
 * facts a SystemView gives where no backend loads, and reports why KVM was not probed.
 */
export async function probeCapabilities(target: Backend | SystemOnlyTarget, options: ProbeOptions = {}): Promise<CapabilityReport> {
  const backend = 'unavailable' in target ? undefined : target;
  const sys: SystemView = target.system;
  const lines: CapabilityLine[] = [];
  const add = (l: CapabilityLine) => lines.push(l);
  const cpu = hostCpu(sys);
  const mods = sys.kvmModules();
  const report: CapabilityReport = {
    backend: backend?.name ?? 'none',
    lines,
    kvm: false,
    sev: false,
    sevEs: false,
    snp: false,
    init2: false,
    sevPlatform: false,
    vmTypes: [],
    cpuid: null,
    kernel: sys.kernelRelease(),
    cpu,
    kvmFlavour: flavourOf(mods, cpu),
  };

  add(hostLine(report.kernel, cpu));
  add(cpuFlagsLine(cpu));
  add(flavourLine(report.kvmFlavour, cpu));

  // /dev/kvm
  const kdev = sys.device('/dev/kvm');
  let kvm: Kvm | undefined;
  if (!backend) {
    const unavailable = 'unavailable' in target ? target.unavailable : '';
    add({
      id: 'kvm',
      status: 'fail',
      title: '/dev/kvm',
      value: kdev.exists ? `${kdev.mode ?? 'present'}, not opened` : 'absent',
      meaning: 'kvm-sev opens KVM through its native addon, which did not load: nothing below that needs KVM ioctls was probed.',
      action: unavailable,
    });
  } else {
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
  }

  // kvm_amd parameters
  const param = (n: string) => sys.kvmAmdParam(n);
  if (!mods.includes('kvm_amd')) {
    const vendor = mods.filter((m) => VENDOR_MODULES.includes(m));
    add({
      id: 'kvm_amd',
      status: 'warn',
      title: 'kvm_amd',
      value: mods.length ? `not loaded (loaded: ${mods.join(', ')})` : 'not loaded',
      meaning: `SEV needs the AMD KVM module${vendor.length ? `; this KVM is ${vendor.join(', ')}` : ''}.`,
      action: cpu.svm
        ? 'modprobe kvm_amd sev=1 sev_es=1 on an AMD EPYC host.'
        : 'kvm_amd needs the svm CPU flag, which this CPU does not show (a VM without nested SVM, a non-AMD CPU, or SVM off in the BIOS).',
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
        title: 'KVM CPUID 0x8000001F',
        value: c.sev
          ? `SEV${c.sevEs ? ' SEV-ES' : ''}${c.snp ? ' SEV-SNP' : ''}, C-bit ${c.cbit}, ${c.asids} ASIDs, min SEV ASID ${c.minSevAsid}`
          : 'no SEV',
        meaning: c.sev
          ? `KVM_GET_SUPPORTED_CPUID: guests get the C-bit at position ${c.cbit}; ASIDs ${c.minSevAsid}..${c.asids} are for SEV guests${c.minSevAsid > 1 ? `, 1..${c.minSevAsid - 1} for SEV-ES` : ' (none left for SEV-ES)'}.`
          : 'KVM_GET_SUPPORTED_CPUID has no SEV leaf for guests: the CPU lacks SEV, it is disabled in the firmware, or this KVM (module or parameters) offers none.',
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
      report.init2 = types.some((t) => t === KVM_VM_TYPE.SEV || t === KVM_VM_TYPE.SEV_ES);
      add({
        id: 'vm-types',
        status: 'info',
        title: 'VM types',
        value: report.vmTypes.join(', ') + (mask === 0 ? ' (no KVM_CAP_VM_TYPES: a kernel before 6.10)' : ''),
        meaning: report.init2
          ? 'The kernel creates SEV VMs by type and initialises them with KVM_SEV_INIT2 (6.10+).'
          : mask === 0
            ? 'Only the legacy KVM_SEV_INIT / ES_INIT on a default VM are available here (no INIT2).'
            : 'KVM offers no SEV VM types (they appear only when kvm_amd has SEV enabled).',
      });

      // The KVM_MEMORY_ENCRYPT_OP probe on a throwaway VM.
      const vm = kvm.createVm();
      try {
        report.sev = new SevGuestCommands(vm).isEnabled();
      } finally {
        vm.close();
      }
      report.sevEs = report.sev && c.sevEs && (param('sev_es') ?? 'Y') !== 'N';
      // kvm_amd's sev_snp (rewritten at load to what works) and the SNP VM type; KVM sets the CPUID bit from the same.
      report.snp = report.sev && (param('sev_snp') ?? 'N') === 'Y' && types.includes(KVM_VM_TYPE.SNP);
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
  } else if (!backend) {
    add({
      id: 'dev-sev',
      status: 'info',
      title: '/dev/sev',
      value: `${sdev.mode ?? 'present'}, not opened`,
      meaning: `${sdev.readable ? 'Readable' : 'Not readable'} and ${sdev.writable ? 'writable' : 'not writable'} by this process; PLATFORM_STATUS needs the native addon.`,
    });
  } else {
    let plat: SevPlatform | undefined;
    try {
      plat = SevPlatform.open(backend, { write: false });
      const st = await plat.platformStatus();
      report.sevPlatform = true;
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

/**
 * Whether a probed host (or backend) has what `req` names, and why not: 'kvm' a usable /dev/kvm;
 * 'sev' KVM's SEV commands and the /dev/sev firmware device; 'sev-es' and 'snp' those guest types too.
 */
export function checkRequirement(report: CapabilityReport, req: Requirement): { met: boolean; why: string } {
  const lineOf = (id: string) => report.lines.find((l) => l.id === id);
  if (!report.kvm) return { met: false, why: `no usable KVM: ${lineOf('kvm')?.meaning ?? 'not probed'}` };
  if (req === 'kvm') return { met: true, why: `/dev/kvm works (${lineOf('kvm-flavour')?.value ?? 'KVM'})` };
  if (!report.sev) {
    const flavour = report.kvmFlavour.kind;
    const which = flavour === 'svm' ? '' : `; this KVM is ${lineOf('kvm-flavour')?.value ?? flavour}`;
    return { met: false, why: `${req === 'sev' ? '' : 'no SEV: '}KVM answers ENOTTY to SEV commands${which}` };
  }
  if (!report.sevPlatform) return { met: false, why: `/dev/sev is not usable: ${lineOf('dev-sev')?.meaning ?? 'absent'}` };
  if (req === 'sev') return { met: true, why: 'KVM accepts SEV commands and /dev/sev answers' };
  if (req === 'sev-es')
    return report.sevEs
      ? { met: true, why: 'SEV-ES: CPUID, kvm_amd sev_es and the SEV commands agree' }
      : { met: false, why: 'no SEV-ES: CPUID 0x8000001F or kvm_amd sev_es says no' };
  return report.snp
    ? { met: true, why: 'SEV-SNP: kvm_amd sev_snp and the SNP VM type agree' }
    : { met: false, why: 'no SEV-SNP: kvm_amd sev_snp or the KVM_X86_SNP_VM type says no' };
}

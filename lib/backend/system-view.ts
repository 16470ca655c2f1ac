/**
 * What a diagnosis needs to know about the host beyond ioctls: kvm_amd's module parameters,
 * RLIMIT_MEMLOCK, access rights on the device nodes, CPU flags. Every backend has one (the native
 * backend reads the real host; the mock answers from its options), and the layers above read host
 * facts only from there, so a mocked fact is never taken for a fact of the host.
 */
export interface DeviceAccess {
  path: string;
  exists: boolean;
  readable: boolean;
  writable: boolean;
  /** e.g. 'crw-rw----' */
  mode?: string;
  uid?: number;
  gid?: number;
}

/** The processor, as /proc/cpuinfo names it (CPUID Fn0000_0001_EAX and the brand string). */
export interface CpuInfo {
  /** 'AuthenticAMD', 'GenuineIntel' */
  vendor: string;
  /** Family, model and stepping with the extended fields folded in (AMD CPUID spec, pub. 25481, Fn0000_0001_EAX). */
  family: number;
  model: number;
  stepping: number;
  /** e.g. 'AMD EPYC 7763 64-Core Processor' */
  modelName: string;
}

export interface SystemView {
  /** /sys/module/kvm_amd/parameters/<name> ('Y', 'N', a number), or undefined if absent. */
  kvmAmdParam(name: string): string | undefined;
  /** The loaded KVM vendor modules ('kvm_amd', 'kvm_intel', ...). */
  kvmModules(): string[];
  /** RLIMIT_MEMLOCK soft limit in bytes ('unlimited' when unlimited). */
  memlockLimit(): bigint | 'unlimited';
  /** Whether the process has CAP_IPC_LOCK (which lifts the memlock limit for pinning). */
  capIpcLock(): boolean;
  device(path: string): DeviceAccess;
  /** CPU feature flags from /proc/cpuinfo (first CPU): the kernel's view of CPUID ('svm', 'sev', 'hypervisor', ...). */
  cpuFlags(): Set<string>;
  /** The first CPU's identity from /proc/cpuinfo, or undefined where there is none. */
  cpuInfo(): CpuInfo | undefined;
  /** The running kernel's release (uname -r). */
  kernelRelease(): string;
}

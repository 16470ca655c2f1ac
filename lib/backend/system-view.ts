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
  /** CPU feature flags from /proc/cpuinfo (first CPU). */
  cpuFlags(): Set<string>;
}

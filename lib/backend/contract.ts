/**
 * The backend contract: everything above it (KVM objects, SEV, the guest owner, the CLI) talks to
 * the kernel only through this interface, at the ioctl level, with the kernel's own struct bytes.
 *
 * Three implementations: `native` (the C++ shim, real /dev/kvm and /dev/sev), `mock` (a model of the
 * kernel and the AMD Secure Processor, pure TypeScript) and `hybrid` (real KVM, mocked SEV). One
 * conformance suite runs against all of them.
 *
 * Behaviour rules every implementation follows:
 * - **Errors.** A failed syscall throws (or rejects with) a {@link KvmError} shaped like Node's own:
 *   `code` ('ENOTTY'), `errno` (negative, -25), `syscall` ('ioctl'), plus `request`
 *   ('KVM_MEMORY_ENCRYPT_OP'). Bad arguments throw Node-style TypeError/RangeError with
 *   `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` / `ERR_OUT_OF_RANGE`; nothing reaches the kernel.
 *   An ioctl request outside the allowlist throws `ERR_KVM_SEV_UNKNOWN_IOCTL`.
 * - **Write-back.** After an ioctl with a struct argument, the struct bytes (and every nested struct
 *   and buffer a fix-up pointed at) hold what the kernel wrote, also when the ioctl failed (KVM
 *   writes `kvm_sev_cmd.error` back on failure). Pointer fields always read back as 0.
 * - **Closed fds.** Any call on a closed {@link BackendFd} fails with EBADF. `close()` is idempotent.
 *   Closing an fd that an async call or a running vCPU is using takes effect when that use ends
 *   (the fd number is never reused under a call in flight).
 * - **Concurrency.** `ioctlAsync` may run concurrently with other calls; the buffers it was given
 *   belong to the call until its Promise settles (what JS writes into them meanwhile is overwritten).
 *   A vCPU runs one KVM_RUN at a time: a second `run()` while one is in flight fails with
 *   `ERR_KVM_SEV_VCPU_BUSY`.
 * - **Cancellation.** `VcpuRunHandle.kick()` makes a KVM_RUN in flight (or the next one) return at
 *   once with -EINTR (resolved, not rejected). `close()` kicks, then waits for the vCPU thread.
 * - **Memory.** A guest-memory mapping that backs a memory slot of a live VM, or that an async call is
 *   using, refuses `unmap()` with EBUSY. After `unmap()` its `buffer` is detached (byteLength 0).
 * - **Event fds.** An eventfd is an owned fd (kind 'eventfd') that KVM_IRQFD / KVM_IOEVENTFD take by
 *   number. `eventfdWait` settles on the event loop (no thread per fd); one wait per eventfd at a
 *   time (a second rejects with ERR_KVM_SEV_EVENTFD_BUSY); `eventfdCancel` rejects it with ABORT_ERR.
 * - **KVM_SEV command ids.** `kvm_sev_cmd.data` is laid out by the command-id table of the kernel
 *   behind the VM fd ({@link SevCommandTable}), which is a property of that VM, never of the process.
 */
import type { IoctlArg, MappingHandle } from '../uapi/ioctl-arg.js';
import type { SevCommandTable } from '../uapi/sev-command-table.js';
import type { SystemView } from './system-view.js';

export type BackendName = 'native' | 'mock' | 'hybrid';

/** One ioctl of {@link Backend.ioctlBatch}. */
export interface IoctlCall {
  fd: BackendFd;
  request: number;
  arg?: IoctlArg;
}
export type DevicePath = '/dev/kvm' | '/dev/sev';
/**
 * 'eventfd' ({@link Backend.eventfd}), 'device' (KVM_CREATE_DEVICE), 'stats' (KVM_GET_STATS_FD),
 * 'guest_memfd' (KVM_CREATE_GUEST_MEMFD) besides the device, VM, vCPU, memfd and socket fds.
 */
export type FdKind = 'kvm' | 'sev' | 'vm' | 'vcpu' | 'memfd' | 'socket' | 'eventfd' | 'device' | 'stats' | 'guest_memfd' | 'other';

/** An owned file descriptor. */
export interface BackendFd {
  /** What it is; 'closed' once closed. */
  readonly kind: FdKind | 'closed';
  /** The fd number, for diagnostics and traces only (-1 once closed): calls take the object. */
  readonly fd: number;
  readonly closed: boolean;
  /** False for a read-only open of /dev/sev (commands that need write access then get EPERM). */
  readonly writable: boolean;
  /** Idempotent. */
  close(): void;
}

/** Guest memory: an mmap of anonymous memory or of a memfd. */
export interface GuestMapping extends MappingHandle {
  /** The mapped bytes, without copies. Detached (byteLength 0) after `unmap()`. At most 4 GiB (Node 20's limit). */
  readonly buffer: ArrayBuffer;
  /** [offset, offset+length) of the mapping, without copies (each view at most 4 GiB); detached by `unmap()`. */
  view(offset: number, length?: number): ArrayBuffer;
  /** How many memory slots of live VMs point here. */
  readonly bindings: number;
  /** Unmaps; EBUSY while a live VM's memory slot or a call in flight uses it. Idempotent. */
  unmap(): void;
}

/** KVM_RUN for one vCPU, and its shared `kvm_run` page. */
export interface VcpuRunHandle {
  /** The mmapped `struct kvm_run` (KVM_GET_VCPU_MMAP_SIZE bytes). Detached after `close()`. */
  readonly runArea: ArrayBuffer;
  readonly running: boolean;
  readonly closed: boolean;
  /** KVM_RUN on the vCPU's own thread: resolves 0, or -4 (-EINTR) when kicked or signalled. */
  run(): Promise<number>;
  /**
   * run(), except that a run which completed at once answers its result (a number) rather than a
   * settled Promise. Optional: the native backend has it, where the Promise is most of what an inline
   * run costs in user space; {@link Vcpu.run} uses it when present.
   */
  runOrPromise?(): number | Promise<number>;
  /** KVM_RUN on the calling thread (for a worker thread that owns the vCPU). */
  runSync(): number;
  kick(): void;
  close(): void;
}

export interface ReceivedFds {
  readonly data: Uint8Array;
  readonly fds: BackendFd[];
}

export interface Backend {
  readonly name: BackendName;
  /** The host around the devices (module parameters, limits, device access), for diagnosis. */
  readonly system: SystemView;

  /** open(2) of a device; `write: false` opens read-only. */
  open(path: DevicePath, options?: { write?: boolean }): BackendFd;

  /** A synchronous ioctl; returns the kernel's non-negative result. */
  ioctl(fd: BackendFd, request: number, arg?: IoctlArg): number;
  /** The same ioctl off the JS thread; for calls that may take long (SEV firmware commands). */
  ioctlAsync(fd: BackendFd, request: number, arg?: IoctlArg): Promise<number>;
  /** An ioctl that returns a new fd (KVM_CREATE_VM, KVM_CREATE_VCPU). */
  ioctlFd(fd: BackendFd, request: number, arg?: IoctlArg): BackendFd;
  /**
   * Many synchronous ioctls in one call (on the native backend, one crossing into native code), for
   * the work that comes in bursts: restoring a vCPU's state, memory slots. Each is checked and issued
   * as `ioctl()` would, in order, with the same write-back; the first that is refused or fails stops
   * the batch and throws its error, with `index` set to its position in `calls` (the ones before it
   * took effect). Returns the kernel's results. Never an ioctl that returns an fd, nor KVM_RUN.
   */
  ioctlBatch(calls: readonly IoctlCall[]): number[];

  /**
   * The KVM_SEV command-id table by which this backend lays out `kvm_sev_cmd.data` of VM fd `vm`'s
   * KVM_MEMORY_ENCRYPT_OP (id 22: KVM_SEV_INIT2 upstream, LOCAL_SEND on a kernel with the 2021
   * local-migration patch). The mock and the hybrid answer their kernel profile's; native answers
   * what was set for this fd, the upstream table until then. Not a VM fd: ERR_INVALID_ARG_VALUE.
   */
  sevCommandTable(vm: BackendFd): SevCommandTable;
  /**
   * Says which command-id table the kernel behind VM fd `vm` speaks, for this fd only: other VMs,
   * and a VM fd received over a socket, keep theirs. Native keeps it in the fd's state (the kernel
   * cannot be asked; the shim lets the local-migration ids take over only 22 and unassigned ids).
   * The mock and the hybrid know their kernel: another table is refused with ERR_KVM_SEV_COMMAND_TABLE.
   */
  setSevCommandTable(vm: BackendFd, table: SevCommandTable): void;

  mmapAnonymous(size: number): GuestMapping;
  memfdCreate(name: string, size: number): BackendFd;
  mmapShared(memfd: BackendFd, size: number, offset?: number): GuestMapping;

  /** Maps `kvm_run` of a vCPU fd and prepares its run thread. */
  createRunner(vcpu: BackendFd, mmapSize: number): VcpuRunHandle;

  /**
   * eventfd(2), non-blocking and close-on-exec (`semaphore`: EFD_SEMAPHORE), for KVM_IRQFD and
   * KVM_IOEVENTFD. The counter is read and written with the eventfd* methods.
   */
  eventfd(options?: { initval?: number; semaphore?: boolean }): BackendFd;
  /** write(2) to an eventfd: adds `value` (default 1) to its counter; EAGAIN if it would overflow. */
  eventfdWrite(fd: BackendFd, value?: bigint): void;
  /** read(2) of an eventfd without blocking: the counter (then 0; 1 per read in semaphore mode), or 0n. */
  eventfdRead(fd: BackendFd): bigint;
  /** Resolves with the counter (read, so reset) once it is non-zero; on the event loop. */
  eventfdWait(fd: BackendFd): Promise<bigint>;
  /** Rejects a wait in flight on this eventfd with ABORT_ERR (before closing it). */
  eventfdCancel(fd: BackendFd): void;
  /** pread(2) of a binary-stats fd (KVM_GET_STATS_FD): bytes read into `into` from `position`. */
  pread(fd: BackendFd, into: Uint8Array, position: number): number;

  /** Unix sockets and SCM_RIGHTS, for handing fds to another VMM process. */
  socketPair(): [BackendFd, BackendFd];
  unixListen(path: string): BackendFd;
  unixConnect(path: string): BackendFd;
  unixAccept(listener: BackendFd): Promise<BackendFd>;
  /** Sends all of `data` (fds ride on its first byte), off the event loop: a full socket never blocks JS. */
  sendFds(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): Promise<number>;
  recvFds(socket: BackendFd, maxBytes: number, maxFds?: number): Promise<ReceivedFds>;
}

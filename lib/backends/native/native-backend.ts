/**
 * The native backend: the C++ shim over the real /dev/kvm and /dev/sev. Every method is a direct
 * call into the addon (no wrapper objects on hot paths); the addon validates its arguments.
 */
import type { IoctlArg } from '../../uapi/ioctl-arg.js';
import type { Backend, BackendFd, DevicePath, GuestMapping, IoctlCall, ReceivedFds, VcpuRunHandle } from '../../backend/contract.js';
import { atIndex, checkCalls } from '../../backend/ioctl-batch.js';
import { invalidArgType } from '../../uapi/errors.js';
import { SevCommandTable } from '../../uapi/sev-command-table.js';
import { loadAddon, type NativeAddon } from './addon.js';
import type { SystemView } from '../../backend/system-view.js';
import { HostSystemView } from './host-system-view.js';

export class NativeBackend implements Backend {
  readonly name = 'native' as const;
  readonly system: SystemView = new HostSystemView();
  /** The loaded addon (throws NativeUnavailableError if it cannot load). */
  readonly addon: NativeAddon;

  private readonly FdHandle: NativeAddon['FdHandle'];

  constructor(addon: NativeAddon = loadAddon()) {
    this.addon = addon;
    this.FdHandle = addon.FdHandle;
  }

  open(path: DevicePath, options: { write?: boolean } = {}): BackendFd {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'object', options);
    return this.addon.open(path, options.write ?? true);
  }
  // The addon takes the fd's number and finds it in its table of live fds (EBADF if closed).
  ioctl(fd: BackendFd, request: number, arg?: IoctlArg): number {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    return this.addon.ioctl(fd.fd, request, arg);
  }
  ioctlAsync(fd: BackendFd, request: number, arg?: IoctlArg): Promise<number> {
    if (!(fd instanceof this.FdHandle)) return Promise.reject(invalidArgType('fd', 'an instance of FdHandle', fd));
    return this.addon.ioctlAsync(fd.fd, request, arg);
  }
  private batchNums: Float64Array | undefined;
  ioctlBatch(calls: readonly IoctlCall[]): number[] {
    const checked = checkCalls(calls);
    // fd number, request, integer argument (NaN: a struct, in args), result: native/ioctl.cc. The
    // array is kept between batches (allocating one per batch costs more than the crossing saves),
    // unless a batch runs inside another (a struct argument's getter may start one).
    const want = checked.length * 4;
    let nums = this.batchNums;
    this.batchNums = undefined;
    if (!nums || nums.length < want) nums = new Float64Array(Math.max(want, 64));
    let args: unknown[] | undefined;
    let last: BackendFd | undefined;
    let lastNum = -1;
    for (let i = 0; i < checked.length; i++) {
      const c = checked[i]!;
      if (c.fd !== last) {
        // The fd number is a native getter: asked once per fd of the batch (nothing closes one meanwhile).
        if (!(c.fd instanceof this.FdHandle)) throw atIndex(invalidArgType(`calls[${i}].fd`, 'an instance of FdHandle', c.fd), i);
        last = c.fd;
        lastNum = c.fd.fd;
      }
      nums[4 * i] = lastNum;
      nums[4 * i + 1] = typeof c.request === 'number' ? c.request : NaN;
      if (typeof c.arg === 'number') nums[4 * i + 2] = c.arg;
      else if (c.arg === undefined) nums[4 * i + 2] = 0;
      else {
        nums[4 * i + 2] = NaN;
        (args ??= [])[i] = c.arg;
      }
    }
    try {
      this.addon.ioctlBatch(want === nums.length ? nums : nums.subarray(0, want), args);
      const out = new Array<number>(checked.length);
      for (let i = 0; i < checked.length; i++) out[i] = nums[4 * i + 3]!;
      return out;
    } finally {
      this.batchNums = nums;
    }
  }
  ioctlFd(fd: BackendFd, request: number, arg?: IoctlArg): BackendFd {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    return this.addon.ioctlFd(fd.fd, request, arg);
  }
  // No kernel says which KVM_SEV ids it has: the caller does, per VM fd, and the shim keeps it there.
  sevCommandTable(vm: BackendFd): SevCommandTable {
    if (!(vm instanceof this.FdHandle)) throw invalidArgType('vm', 'an instance of FdHandle', vm);
    const [send, receive] = this.addon.sevCommandIds(vm.fd);
    return send === 0 && receive === 0
      ? SevCommandTable.UPSTREAM
      : SevCommandTable.withLocalMigration({ send, receive, allowUpstreamCollision: true });
  }
  setSevCommandTable(vm: BackendFd, table: SevCommandTable): void {
    if (!(vm instanceof this.FdHandle)) throw invalidArgType('vm', 'an instance of FdHandle', vm);
    if (!(table instanceof SevCommandTable)) throw invalidArgType('table', 'an instance of SevCommandTable', table);
    const lm = table.localMigration;
    this.addon.setSevCommandIds(vm.fd, lm?.LOCAL_SEND ?? 0, lm?.LOCAL_RECEIVE ?? 0);
  }
  mmapAnonymous(size: number): GuestMapping {
    return this.addon.mmapAnonymous(size);
  }
  memfdCreate(name: string, size: number): BackendFd {
    return this.addon.memfdCreate(name, size);
  }
  mmapShared(memfd: BackendFd, size: number, offset = 0): GuestMapping {
    return this.addon.mmapShared(memfd, size, offset);
  }
  eventfd(options: { initval?: number; semaphore?: boolean } = {}): BackendFd {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'object', options);
    return this.addon.eventfd(options.initval ?? 0, options.semaphore === true);
  }
  eventfdWrite(fd: BackendFd, value = 1n): void {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    this.addon.eventfdWrite(fd.fd, value);
  }
  eventfdRead(fd: BackendFd): bigint {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    return this.addon.eventfdRead(fd.fd);
  }
  eventfdWait(fd: BackendFd): Promise<bigint> {
    if (!(fd instanceof this.FdHandle)) return Promise.reject(invalidArgType('fd', 'an instance of FdHandle', fd));
    return this.addon.eventfdWait(fd.fd);
  }
  eventfdCancel(fd: BackendFd): void {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    if (!fd.closed) this.addon.eventfdCancel(fd.fd);
  }
  pread(fd: BackendFd, into: Uint8Array, position: number): number {
    if (!(fd instanceof this.FdHandle)) throw invalidArgType('fd', 'an instance of FdHandle', fd);
    return this.addon.pread(fd.fd, into, position);
  }
  createRunner(vcpu: BackendFd, mmapSize: number): VcpuRunHandle {
    return new this.addon.VcpuRunner(vcpu, mmapSize);
  }
  socketPair(): [BackendFd, BackendFd] {
    return this.addon.socketPair();
  }
  unixListen(path: string): BackendFd {
    return this.addon.unixListen(path);
  }
  unixConnect(path: string): BackendFd {
    return this.addon.unixConnect(path);
  }
  unixAccept(listener: BackendFd): Promise<BackendFd> {
    return this.addon.unixAccept(listener);
  }
  sendFds(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): Promise<number> {
    return this.addon.sendFds(socket, data, fds);
  }
  recvFds(socket: BackendFd, maxBytes: number, maxFds?: number): Promise<ReceivedFds> {
    return this.addon.recvFds(socket, maxBytes, maxFds);
  }
}

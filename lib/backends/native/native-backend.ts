/**
 * The native backend: the C++ shim over the real /dev/kvm and /dev/sev. Every method is a direct
 * call into the addon (no wrapper objects on hot paths); the addon validates its arguments.
 */
import type { IoctlArg } from '../../uapi/ioctl-arg.js';
import type { Backend, BackendFd, DevicePath, GuestMapping, ReceivedFds, VcpuRunHandle } from '../../backend/contract.js';
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

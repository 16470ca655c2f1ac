/**
 * The shared mock SEV service: one {@link MockHost} (kernel SEV code and firmware, over the hybrid's
 * plaintext memory controller) served over a Unix socket to the hybrid backends of several
 * processes, so that the SEV state follows a guest from one VMM process to another as the kernel's
 * does (seed 000: a token made in process A is redeemed in process B; MOVE from a VM fd received
 * over SCM_RIGHTS).
 *
 * What the daemon keeps, and why it is faithful to the kernel:
 * - Per attached VM, the real VM fd the client sent (a new reference to the same open file, as any
 *   SCM_RIGHTS copy is). A client that received a VM fd (the new VMM of a handoff) sends it in turn
 *   (`adopt`, or with a MOVE/COPY), and the daemon finds the VM whose fd refers to the same open file
 *   (kcmp KCMP_FILE).
 * - Per VM, who holds it: each client that attached or adopted it (counted), and mirrors. The VM's
 *   SEV state is destroyed (unpin, DEACTIVATE, DECOMMISSION, ASID to reclaim) when nobody holds it:
 *   an explicit `release`, or the client's disconnect (a killed process drops all its references),
 *   which is the kernel's rule that a VM lives while any fd refers to it. So a token becomes invalid
 *   once its source is destroyed before the receive, exactly as the seed says.
 * - Per memfd, one shared mapping (memfds that are the same file are mapped once), registered in the
 *   host's address space: memory slots and guest-memory ranges of every client resolve there.
 *
 * Messages (JSON, framing.ts; requests carry `op`, answers `ok`): hello, attach(+VM fd), slot(+memfd
 * the first time), vcpu, ioctl, cap (move/copy, +source fd if not attached here), adopt(+VM fd),
 * release, sevOpen, sevIoctl, sevClose, status.
 *
 * It trusts no client (each is another process of the same user, possibly a broken or hostile one):
 * - only its own user may connect (SO_PEERCRED), and at most `maxClients` at once;
 * - a frame is at most MAX_FRAME bytes (refused from its header, before it is buffered), copied once;
 * - a memfd is mapped only if it is sealed against shrinking (F_SEAL_SHRINK): a client that shrank
 *   a mapped file would kill the daemon with SIGBUS on the next access, and every client's SEV
 *   state with it;
 * - fds a request does not use are closed at once, and a client holds at most MAX_CLIENT_MEMFDS
 *   memfds and MAX_CLIENT_VMS VMs here, so one client cannot fill the daemon's fd table;
 * - a client sees only the VMs it holds (`status`: their SEV state, ASIDs and LOCAL_SEND tokens).
 */
import { fstatSync, unlinkSync } from 'node:fs';
import type { BackendFd, GuestMapping } from '../../../backend/contract.js';
import { KvmSevError } from '../../../backend/errors.js';
import { NativeBackend } from '../../native/native-backend.js';
import { MessageReader, sendMessage } from '../../../backend/framing.js';
import { ERRNO } from '../../../uapi/errno.js';
import { PlaintextMemory } from '../common/plaintext-memory.js';
import { RealVmPort, type RealMemslot } from '../common/real-vm-port.js';
import { decodeArg, encodeBack, errorToWire, fromWire, MAX_FRAME, toWire, type WireArg } from './wire.js';
import {
  MockHost,
  ExternalVcpuPort,
  type SevSnapshot,
  type VcpuRegisterState,
  type KernelProfile,
  type ProcessorName,
} from '../../mock/seam.js';

interface SharedMemfd {
  fd: BackendFd;
  mapping: GuestMapping;
}

/** F_SEAL_SHRINK (include/uapi/linux/fcntl.h). */
const F_SEAL_SHRINK = 0x0002;
/** What one client may hold here (each costs the daemon an fd and, for memfds, a mapping). */
export const MAX_CLIENT_MEMFDS = 64;
export const MAX_CLIENT_VMS = 64;
/** fds a client may send ahead of the frame that uses them. */
const MAX_PENDING_FDS = 64;

class DaemonVcpu extends ExternalVcpuPort {
  constructor(
    readonly vm: DaemonVm,
    index: number,
  ) {
    super(index);
  }
  registerState(): VcpuRegisterState {
    const s = this.vm.regs?.[this.index];
    if (!s) throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `the client sent no register state for vCPU ${this.index}`);
    return s;
  }
}

/** A client's VM (`fd` is the one the client sent): who holds it, and the register state of the request being served. */
class DaemonVm extends RealVmPort<DaemonVcpu, RealMemslot & { readonly mem: SharedMemfd }> {
  readonly holders = new Map<Conn, number>();
  mirrorHolds = 0;
  regs: VcpuRegisterState[] | undefined;
  destroyed = false;
  /** The SEV layer's id of this VM (what its snapshot lists). */
  sevId = -1;
  constructor(
    readonly server: MockSevServer,
    readonly id: number,
    vmType: number,
    fd: BackendFd,
  ) {
    super(server.host, fd, vmType);
  }
  hold(): void {
    this.mirrorHolds++;
  }
  release(): void {
    this.mirrorHolds--;
    this.server.maybeDestroy(this);
  }
  get holdCount(): number {
    let n = this.mirrorHolds;
    for (const c of this.holders.values()) n += c;
    return n;
  }
}

class Conn {
  readonly memfds = new Map<number, SharedMemfd>();
  readonly sevFds = new Map<number, BackendFd>();
  /** fds of the request being served that the daemon keeps (the rest are closed after it). */
  readonly kept = new Set<BackendFd>();
  pid = 0;
  constructor(
    readonly id: number,
    readonly socket: BackendFd,
  ) {}
}

export interface MockSevServerOptions {
  socket: string;
  kernel?: KernelProfile;
  processor?: ProcessorName;
  /** Exit (close) when the last client has gone and no VM is left (default true). */
  exitWhenIdle?: boolean;
  /** Without any client for this long after start, close (default 10 s). */
  idleStartMs?: number;
  /** Clients served at once; a further connection is closed at once (default 32). */
  maxClients?: number;
  onClose?: () => void;
}

export class MockSevServer {
  readonly native = new NativeBackend();
  readonly memory = new PlaintextMemory();
  readonly host: MockHost;
  private readonly listener: BackendFd;
  private readonly conns = new Set<Conn>();
  private readonly vms = new Map<number, DaemonVm>();
  private readonly memfds = new Set<SharedMemfd>();
  private nextId = 1;
  private closed = false;
  private everConnected = false;

  constructor(readonly options: MockSevServerOptions) {
    this.host = new MockHost({ kernel: options.kernel ?? '7.2', processor: options.processor ?? 'milan', memory: this.memory });
    this.listener = this.native.unixListen(options.socket);
    void this.acceptLoop();
    const idle = options.idleStartMs ?? 10_000;
    setTimeout(() => {
      if (!this.everConnected) this.close();
    }, idle).unref();
  }

  private async acceptLoop(): Promise<void> {
    while (!this.closed) {
      let s: BackendFd;
      try {
        s = await this.native.unixAccept(this.listener);
      } catch {
        if (this.closed) return;
        continue;
      }
      // Only this user's processes, and not too many of them.
      let peer: { uid: number } | undefined;
      try {
        peer = this.native.addon.peerCredentials(s);
      } catch {
        peer = undefined;
      }
      if (!peer || peer.uid !== (process.getuid?.() ?? 0) || this.conns.size >= (this.options.maxClients ?? 32)) {
        s.close();
        continue;
      }
      this.everConnected = true;
      const c = new Conn(this.nextId++, s);
      this.conns.add(c);
      void this.serve(c);
    }
  }

  private async serve(c: Conn): Promise<void> {
    const reader = new MessageReader(this.native, c.socket, { maxFrame: MAX_FRAME, maxFds: MAX_PENDING_FDS });
    for (;;) {
      let msg;
      try {
        msg = await reader.next();
      } catch {
        break;
      }
      let reply: Record<string, unknown>;
      try {
        reply = { ok: true, ...(await this.handle(c, fromWire(msg.body) as Record<string, unknown>, msg.fds)) };
      } catch (e) {
        reply = { ok: false, error: errorToWire(e) };
      } finally {
        // What the request did not keep is closed now, whatever it was and however it ended.
        for (const f of msg.fds) if (!c.kept.has(f)) f.close();
        c.kept.clear();
      }
      try {
        await sendMessage(this.native, c.socket, toWire(reply) as Record<string, unknown>);
      } catch {
        break;
      }
    }
    reader.close();
    this.disconnect(c);
  }

  /** A client went (closed, or its process died): everything it held is released. */
  private disconnect(c: Conn): void {
    this.conns.delete(c);
    c.socket.close();
    for (const f of c.sevFds.values()) f.close();
    c.sevFds.clear();
    for (const vm of this.vms.values()) {
      if (vm.holders.delete(c)) this.maybeDestroy(vm);
    }
    c.memfds.clear();
    this.sweepMemfds();
    if ((this.options.exitWhenIdle ?? true) && this.conns.size === 0 && this.vms.size === 0) this.close();
  }

  maybeDestroy(vm: DaemonVm): void {
    if (vm.destroyed || vm.holdCount > 0) return;
    vm.destroyed = true;
    this.vms.delete(vm.id);
    vm.sev.destroy();
    vm.fd.close();
    this.sweepMemfds();
  }

  /** Unmap memfds no client names and no VM's slot uses. */
  private sweepMemfds(): void {
    const used = new Set<SharedMemfd>();
    for (const c of this.conns) for (const m of c.memfds.values()) used.add(m);
    for (const vm of this.vms.values()) for (const s of vm.slots.values()) used.add(s.mem);
    for (const m of this.memfds) {
      if (used.has(m)) continue;
      this.memfds.delete(m);
      try {
        m.mapping.unmap();
      } catch {
        /* still busy: leave it */
      }
      m.fd.close();
    }
  }

  private vmOf(c: Conn, id: unknown): DaemonVm {
    const vm = this.vms.get(Number(id));
    if (!vm || !vm.holders.has(c)) throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `VM ${String(id)} is not held by this client`);
    return vm;
  }

  /** The attached VM whose fd is the same open file as `fd`. */
  private findVm(fd: BackendFd): DaemonVm | undefined {
    for (const vm of this.vms.values()) if (this.native.addon.sameFile(vm.fd, fd)) return vm;
    return undefined;
  }

  private memfd(c: Conn, key: number, fd: BackendFd | undefined): SharedMemfd {
    let m = c.memfds.get(key);
    if (m) {
      fd?.close();
      return m;
    }
    if (!fd || fd.kind !== 'memfd') throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `memfd ${key} was never sent`);
    if (c.memfds.size >= MAX_CLIENT_MEMFDS)
      throw new KvmSevError('ERR_KVM_SEV_TOO_MANY_FDS', `a client may share at most ${MAX_CLIENT_MEMFDS} memfds with the mock SEV service`);
    if ((this.native.addon.memfdSeals(fd) & F_SEAL_SHRINK) === 0)
      throw new KvmSevError(
        'ERR_KVM_SEV_UNSEALED_MEMFD',
        'the mock SEV service maps only memfds sealed against shrinking (F_SEAL_SHRINK, as memfdCreate() makes them): a shrunk file would fault the service',
      );
    for (const x of this.memfds) {
      if (this.native.addon.sameFile(x.fd, fd)) {
        m = x;
        fd.close();
        break;
      }
    }
    if (!m) {
      // Sealed: the file cannot shrink below this size while it is mapped.
      const size = fstatSync(fd.fd).size;
      m = { fd, mapping: this.native.mmapShared(fd, size, 0) };
      this.memfds.add(m);
      c.kept.add(fd);
    }
    c.memfds.set(key, m);
    return m;
  }

  /** Memfds a request names for the first time ride with it (keys in `memKeys`, in fd order). */
  private newMemfds(c: Conn, m: Record<string, unknown>, fds: BackendFd[]): void {
    const keys = (m['memKeys'] as number[] | undefined) ?? [];
    fds.forEach((f, i) => {
      if (typeof keys[i] === 'number') this.memfd(c, keys[i], f);
    });
  }

  private hold(vm: DaemonVm, c: Conn): void {
    vm.holders.set(c, (vm.holders.get(c) ?? 0) + 1);
  }

  private async handle(c: Conn, m: Record<string, unknown>, fds: BackendFd[]): Promise<Record<string, unknown>> {
    switch (m['op']) {
      case 'hello':
        c.pid = Number(m['pid'] ?? 0);
        return { pid: process.pid, kernel: this.host.options.kernel, processor: this.host.options.processor.name };
      case 'attach': {
        const [fd] = fds;
        if (!fd || fd.kind !== 'vm') throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', 'attach needs the VM fd');
        if ([...this.vms.values()].filter((v) => v.holders.has(c)).length >= MAX_CLIENT_VMS)
          throw new KvmSevError('ERR_KVM_SEV_TOO_MANY_FDS', `a client may hold at most ${MAX_CLIENT_VMS} VMs at the mock SEV service`);
        const vmType = Number(m['vmType']);
        const vm = new DaemonVm(this, this.nextId++, vmType, fd);
        const known = new Set(this.host.sev.snapshot().vms.map((v) => v.id));
        vm.sev = this.host.sev.attach(vm);
        vm.sevId = this.host.sev.snapshot().vms.find((v) => !known.has(v.id))?.id ?? -1;
        c.kept.add(fd);
        this.vms.set(vm.id, vm);
        this.hold(vm, c);
        return { vm: vm.id };
      }
      case 'slot': {
        const vm = this.vmOf(c, m['vm']);
        const slot = Number(m['slot']);
        if (Number(m['size']) === 0) vm.slots.delete(slot);
        else {
          const mem = this.memfd(c, Number(m['mem']), fds[0]);
          vm.slots.set(slot, { gpa: m['gpa'] as bigint, size: Number(m['size']), mapping: mem.mapping, mem, offset: Number(m['offset']) });
        }
        this.sweepMemfds();
        return {};
      }
      case 'vcpu': {
        const vm = this.vmOf(c, m['vm']);
        vm.vcpuList.push(new DaemonVcpu(vm, vm.vcpuList.length));
        return { index: vm.vcpuList.length - 1 };
      }
      case 'ioctl': {
        const vm = this.vmOf(c, m['vm']);
        this.newMemfds(c, m, fds);
        const memOf = (k: number) => this.memfd(c, k, undefined).mapping;
        const flags = (m['guestDebug'] as boolean[] | undefined) ?? [];
        vm.vcpuList.forEach((v, i) => (v.guestDebugOn = flags[i] ?? false));
        vm.regs = m['regs'] as VcpuRegisterState[] | undefined;
        const { arg, back } = decodeArg(m['arg'] as WireArg, memOf);
        try {
          const result = await vm.sev.ioctlAsync(Number(m['request']), arg);
          return { result, back: encodeBack(back), ...this.vmState(vm) };
        } catch (e) {
          return { failed: errorToWire(e), back: encodeBack(back), ...this.vmState(vm) };
        } finally {
          vm.regs = undefined;
        }
      }
      case 'cap': {
        const vm = this.vmOf(c, m['vm']);
        let src: DaemonVm | undefined;
        if (m['src'] !== undefined && m['src'] !== null) src = this.vmOf(c, m['src']);
        else if (fds[0]) src = this.findVm(fds[0]);
        if (m['cap'] === 'move') vm.sev.moveEncContextFrom(src ? src.sev : null);
        else vm.sev.copyEncContextFrom(src ? src.sev : null);
        return { ...this.vmState(vm), ...(src ? { src: this.vmState(src) } : {}) };
      }
      case 'adopt': {
        const [fd] = fds;
        if (!fd) throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', 'adopt needs a VM fd');
        const vm = this.findVm(fd);
        if (!vm) return { vm: null };
        this.hold(vm, c);
        return { vm: vm.id, vmType: vm.vmType };
      }
      case 'release': {
        const vm = this.vms.get(Number(m['vm']));
        const n = vm?.holders.get(c);
        if (!vm || !n) return {};
        if (n === 1) vm.holders.delete(c);
        else vm.holders.set(c, n - 1);
        this.maybeDestroy(vm);
        return {};
      }
      case 'sevOpen': {
        const f = this.host.open('/dev/sev', { write: m['write'] !== false });
        c.sevFds.set(f.fd, f);
        return { fd: f.fd };
      }
      case 'sevIoctl': {
        const f = c.sevFds.get(Number(m['fd']));
        this.newMemfds(c, m, fds);
        if (!f) return { failed: { errno: -ERRNO.EBADF, syscall: 'ioctl', name: 'KvmError', message: 'EBADF' }, back: [] };
        const { arg, back } = decodeArg(m['arg'] as WireArg, (k) => this.memfd(c, k, undefined).mapping);
        try {
          return { result: await this.host.ioctlAsync(f, Number(m['request']), arg), back: encodeBack(back) };
        } catch (e) {
          return { failed: errorToWire(e), back: encodeBack(back) };
        }
      }
      case 'sevClose': {
        const f = c.sevFds.get(Number(m['fd']));
        f?.close();
        c.sevFds.delete(Number(m['fd']));
        return {};
      }
      case 'status':
        return this.statusFor(c);
      default:
        throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `unknown request ${String(m['op'])}`);
    }
  }

  /**
   * What one client may see: the VMs it holds, their SEV state (a LOCAL_SEND token included: it
   * made it), and the ASIDs they use. Another client's VMs, and their tokens, are not its business.
   */
  private statusFor(c: Conn): Record<string, unknown> {
    const mine = [...this.vms.values()].filter((v) => v.holders.has(c));
    const ids = new Set(mine.map((v) => v.sevId));
    const all = this.host.sev.snapshot();
    const vms = all.vms.filter((v) => ids.has(v.id));
    const asids = new Set(vms.map((v) => v.asid));
    const snapshot: SevSnapshot = {
      ...all,
      vms,
      asidsHeld: all.asidsHeld.filter((a) => asids.has(a)),
      asidsReclaimable: all.asidsReclaimable.filter((a) => asids.has(a)),
      tokens: vms.filter((v) => v.token !== 0n).length,
    };
    return {
      pid: process.pid,
      clients: this.conns.size,
      vms: mine.map((v) => ({ id: v.id, holders: v.holdCount, dead: v.dead })),
      memfds: c.memfds.size,
      snapshot,
    };
  }

  private vmState(vm: DaemonVm): Record<string, unknown> {
    return { dead: vm.dead, protected: vm.vcpuList.map((v) => v.protectedOn) };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener.close();
    try {
      unlinkSync(this.options.socket);
    } catch {
      /* gone already */
    }
    for (const c of this.conns) c.socket.close();
    for (const vm of this.vms.values()) {
      vm.sev.destroy();
      vm.fd.close();
    }
    this.vms.clear();
    for (const m of this.memfds) {
      try {
        m.mapping.unmap();
      } catch {
        /* busy */
      }
      m.fd.close();
    }
    this.memfds.clear();
    this.options.onClose?.();
  }
}

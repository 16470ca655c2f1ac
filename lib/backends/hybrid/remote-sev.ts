/**
 * The client of the shared mock SEV service (daemon/server.ts): the hybrid backend's SEV
 * seam (attach a VM, SEV ioctls, /dev/sev, MOVE/COPY, destroy) forwarded to a daemon that several
 * processes share, so that the mocked SEV state follows a guest from one VMM process to another.
 *
 * Calls are synchronous, as the Backend contract's are: a request is written (with fds, by
 * SCM_RIGHTS, when it carries any) and the answer read on the calling thread. The daemon is started
 * on demand (detached) by the first client of a socket path, and exits when its last client has gone
 * and no VM is left.
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendFd, FdKind } from '../../backend/contract.js';
import { errnoError, KvmSevError } from '../../backend/errors.js';
import type { NativeBackend } from '../native/native-backend.js';
import { encodeArg, errorFromWire, fromWire, toWire, writeBack, type WireError } from './daemon/wire.js';
import { ERRNO } from '../../uapi/errno.js';
import type { IoctlArg, MappingHandle } from '../../uapi/ioctl-arg.js';
import { type MockSevVm, type SevSnapshot, type VcpuRegisterState } from '../mock/seam.js';
import { MAX_FRAME } from './daemon/wire.js';

const uid = (): number => process.getuid?.() ?? 0;

function untrusted(why: string): KvmSevError {
  return new KvmSevError(
    'ERR_KVM_SEV_UNTRUSTED_SERVICE',
    `${why}: the shared mock SEV service receives VM fds and guest memory, so only a service of this user (uid ${uid()}) is used. ` +
      'Remove what is there, or give a socket path in a folder only you can write to (sevService.socket).',
  );
}

/**
 * A folder only this user can reach: a directory (not a link), owned by this user, with no access
 * for group and others. Created (0700) if missing; anything else there is refused.
 */
export function privateDir(dir: string): string {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== uid() || (st.mode & 0o077) !== 0)
    throw untrusted(`${dir} is not a private folder of this user (a directory of uid ${uid()}, mode 0700)`);
  return dir;
}

/**
 * Where the shared service listens by default: one daemon per user, kernel profile and processor,
 * in a folder only this user can reach (`$XDG_RUNTIME_DIR/kvm-sev`, else `${tmpdir}/kvm-sev-<uid>`,
 * created 0700), so nobody else can listen there first.
 */
export function defaultSevSocket(kernel: string, processor: string): string {
  const xdg = process.env['XDG_RUNTIME_DIR'];
  let base = join(tmpdir(), `kvm-sev-${uid()}`);
  if (xdg) {
    try {
      base = privateDir(join(privateDir(xdg), 'kvm-sev'));
    } catch {
      /* not a usable runtime folder: the one in tmpdir */
    }
  }
  return join(privateDir(base), `mock-${kernel}-${processor}.sock`);
}

/** The socket file is this user's (or absent: undefined). Someone else's is refused before connecting. */
function checkSocketOwner(path: string): boolean {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return false;
  }
  if (!st.isSocket() || st.uid !== uid()) throw untrusted(`${path} is ${st.isSocket() ? `a socket of uid ${st.uid}` : 'not a socket'}`);
  return true;
}

/** What the client needs of a hybrid VM's vCPUs. */
export interface RemoteVcpuPort {
  guestDebugOn: boolean;
  protectedOn: boolean;
  registerState(): VcpuRegisterState;
}
export interface RemoteVmPort {
  readonly vcpuList: readonly RemoteVcpuPort[];
  markDead(): void;
}

export interface DaemonStatus {
  pid: number;
  clients: number;
  vms: { id: number; holders: number; dead: boolean }[];
  memfds: number;
  snapshot: SevSnapshot;
}

const VMSA_COMMANDS = new Set([4 /* LAUNCH_UPDATE_VMSA */, 102 /* SNP_LAUNCH_FINISH */]);

/** A /dev/sev fd of the shared service: its number is the daemon's (what `sev_fd` names there). */
export class RemoteSevFd implements BackendFd {
  private isClosed = false;
  constructor(
    readonly service: RemoteSev,
    private readonly num: number,
    readonly writable: boolean,
  ) {}
  get kind(): FdKind | 'closed' {
    return this.isClosed ? 'closed' : 'sev';
  }
  get fd(): number {
    return this.isClosed ? -1 : this.num;
  }
  get closed(): boolean {
    return this.isClosed;
  }
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (!this.service.closed) this.service.request({ op: 'sevClose', fd: this.num });
  }
}

/** A VM attached to (or adopted from) the shared service. */
export class RemoteSevVm implements MockSevVm {
  isDead = false;
  private released = false;
  constructor(
    readonly service: RemoteSev,
    readonly id: number,
    readonly port: RemoteVmPort | undefined,
  ) {}
  get dead(): boolean {
    return this.isDead;
  }
  /** Applies what the daemon says of the VM after a call. */
  update(r: { dead?: boolean; protected?: boolean[] } | undefined): void {
    if (!r) return;
    if (r.dead && !this.isDead) {
      this.isDead = true;
      this.port?.markDead();
    }
    r.protected?.forEach((on, i) => {
      const v = this.port?.vcpuList[i];
      if (v) v.protectedOn = on;
    });
  }
  ioctl(request: number, arg?: IoctlArg): number {
    const mem = this.service.newMemfds();
    const { wire, back } = encodeArg(arg, (m) => this.service.memOf(m, mem.add));
    let regs: VcpuRegisterState[] | undefined;
    if (this.port && arg !== undefined && typeof arg === 'object' && arg.bytes.byteLength >= 4) {
      const id = new DataView(arg.bytes.buffer, arg.bytes.byteOffset).getUint32(0, true);
      if (VMSA_COMMANDS.has(id)) regs = this.port.vcpuList.map((v) => v.registerState());
    }
    const r = this.service.request(
      {
        op: 'ioctl',
        vm: this.id,
        request,
        arg: wire,
        memKeys: mem.keys,
        guestDebug: this.port?.vcpuList.map((v) => v.guestDebugOn) ?? [],
        ...(regs ? { regs } : {}),
      },
      mem.fds,
    );
    writeBack(back, r['back'] as string[]);
    this.update(r);
    if (r['failed']) throw errorFromWire(r['failed'] as WireError);
    return Number(r['result']);
  }
  ioctlAsync(request: number, arg?: IoctlArg): Promise<number> {
    try {
      return Promise.resolve(this.ioctl(request, arg));
    } catch (e) {
      return Promise.reject(e);
    }
  }
  /** MOVE/COPY from an attached or adopted VM, or from a VM fd the daemon resolves (kcmp). */
  capFrom(cap: 'move' | 'copy', source: RemoteSevVm | BackendFd | null): void {
    const fds = source && !(source instanceof RemoteSevVm) ? [source] : [];
    const r = this.service.request({ op: 'cap', vm: this.id, cap, src: source instanceof RemoteSevVm ? source.id : null }, fds);
    this.update(r);
    if (source instanceof RemoteSevVm) source.update(r['src'] as never);
  }
  moveEncContextFrom(source: MockSevVm | null): void {
    this.capFrom('move', source instanceof RemoteSevVm ? source : null);
  }
  copyEncContextFrom(source: MockSevVm | null): void {
    this.capFrom('copy', source instanceof RemoteSevVm ? source : null);
  }
  touch(): void {
    throw new KvmSevError('ERR_KVM_SEV_UNSUPPORTED', 'demand pinning (touch) is not forwarded to the shared mock SEV service');
  }
  /** This process's reference goes (the daemon destroys the SEV state when nobody holds the VM). */
  destroy(): void {
    if (this.released) return;
    this.released = true;
    if (!this.service.closed) this.service.request({ op: 'release', vm: this.id });
  }
}

export interface RemoteSevOptions {
  /** The daemon's socket (default {@link defaultSevSocket}). */
  socket?: string;
  kernel: string;
  processor: string;
  /** Start the daemon if nobody serves the socket (default true). */
  spawn?: boolean;
  /** How long to wait for a daemon to come up (default 10 s). */
  startTimeoutMs?: number;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class RemoteSev {
  readonly path: string;
  private readonly sock: BackendFd;
  private readonly memKeys = new WeakMap<BackendFd, number>();
  private readonly mapOf = new WeakMap<MappingHandle, { memfd: BackendFd; offset: number }>();
  private nextKey = 1;
  private isClosed = false;
  /** The daemon's pid. */
  readonly daemonPid: number;

  constructor(
    private readonly native: NativeBackend,
    options: RemoteSevOptions,
  ) {
    this.path = options.socket ?? defaultSevSocket(options.kernel, options.processor);
    this.sock = this.connect(options);
    const hello = this.request({ op: 'hello', pid: process.pid });
    if (hello['kernel'] !== options.kernel || hello['processor'] !== options.processor) {
      this.close();
      throw new KvmSevError(
        'ERR_KVM_SEV_SERVICE_MISMATCH',
        `the mock SEV service at ${this.path} models kernel ${String(hello['kernel'])} on ${String(hello['processor'])}, not ${options.kernel} on ${options.processor}`,
      );
    }
    this.daemonPid = Number(hello['pid']);
  }

  private connect(o: RemoteSevOptions): BackendFd {
    const deadline = Date.now() + (o.startTimeoutMs ?? 10_000);
    let lastSpawn = 0;
    let last: unknown;
    for (;;) {
      try {
        checkSocketOwner(this.path);
        const s = this.native.unixConnect(this.path);
        // Who listens is checked again on the connection itself (the path may have changed hands).
        let peer: number;
        try {
          peer = this.native.addon.peerCredentials(s).uid;
        } catch (e) {
          s.close();
          throw e;
        }
        if (peer !== uid()) {
          s.close();
          throw untrusted(`the process listening on ${this.path} runs as uid ${peer}`);
        }
        return s;
      } catch (e) {
        if ((e as { code?: string }).code === 'ERR_KVM_SEV_UNTRUSTED_SERVICE') throw e;
        last = e;
      }
      if (o.spawn === false)
        throw new KvmSevError('ERR_KVM_SEV_NO_SERVICE', `no mock SEV service at ${this.path}: ${(last as Error).message}`);
      if (Date.now() > deadline)
        throw new KvmSevError('ERR_KVM_SEV_NO_SERVICE', `the mock SEV service did not come up at ${this.path}: ${(last as Error).message}`);
      if (Date.now() - lastSpawn > 2000) {
        lastSpawn = Date.now();
        const main = fileURLToPath(new URL('./daemon/main.js', import.meta.url));
        if (!existsSync(main)) throw new KvmSevError('ERR_KVM_SEV_NO_SERVICE', `the mock SEV daemon is not built (${main})`);
        const child = spawn(process.execPath, [main, this.path, o.kernel, o.processor], { detached: true, stdio: 'ignore' });
        child.unref();
      }
      sleepSync(20);
    }
  }

  get closed(): boolean {
    return this.isClosed || this.sock.closed;
  }

  /** One request, answered synchronously. Throws the daemon's error. */
  request(body: Record<string, unknown>, fds: readonly BackendFd[] = []): Record<string, unknown> {
    if (this.closed) throw new KvmSevError('ERR_KVM_SEV_NO_SERVICE', 'the connection to the mock SEV service is closed');
    const json = Buffer.from(JSON.stringify(toWire(body)), 'utf8');
    const frame = Buffer.alloc(4 + json.length);
    frame.writeUInt32LE(json.length, 0);
    json.copy(frame, 4);
    this.native.addon.sendFdsSync(this.sock, frame, fds);
    const head = this.readExactly(4);
    const reply = fromWire(JSON.parse(this.readExactly(head.readUInt32LE(0)).toString('utf8'))) as Record<string, unknown>;
    if (reply['ok'] !== true) throw errorFromWire(reply['error'] as WireError);
    return reply;
  }

  // The socket is non-blocking (as every kvm-sev socket): the shim's recvSync waits for data. The
  // service sends no fds, and a frame may not exceed what it sends (MAX_FRAME).
  private readExactly(n: number): Buffer {
    if (n > MAX_FRAME) {
      this.close();
      throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `the mock SEV service sent a frame of ${n} bytes (at most ${MAX_FRAME})`);
    }
    const b = Buffer.alloc(n);
    for (let at = 0; at < n;) {
      const { data } = this.native.addon.recvSync(this.sock, n - at, 0);
      if (data.length === 0) {
        this.isClosed = true;
        throw new KvmSevError('ERR_KVM_SEV_NO_SERVICE', 'the mock SEV service went away');
      }
      b.set(data, at);
      at += data.length;
    }
    return b;
  }

  /** Records which memfd (native fd) and offset a guest-memory mapping maps. */
  noteMapping(mapping: MappingHandle, memfd: BackendFd, offset: number): void {
    this.mapOf.set(mapping, { memfd, offset });
  }

  isShareable(mapping: MappingHandle): boolean {
    return this.mapOf.has(mapping);
  }

  /** A guest-memory mapping as (memfd key, offset in the memfd); sends the memfd the first time. */
  memOf(mapping: MappingHandle, sendWith?: (key: number, fd: BackendFd | undefined) => void): { key: number; offset: number } {
    const m = this.mapOf.get(mapping);
    if (!m)
      throw new KvmSevError(
        'ERR_KVM_SEV_NOT_MEMFD',
        'the shared mock SEV service reaches guest memory only through a memfd: map it with addMemory({ memfd: true }) (anonymous memory is private to this process)',
      );
    let key = this.memKeys.get(m.memfd);
    if (key === undefined) {
      key = this.nextKey++;
      this.memKeys.set(m.memfd, key);
      sendWith?.(key, m.memfd);
    }
    return { key, offset: m.offset };
  }

  /** Memfds first named by one request (sent with it). */
  newMemfds(): { keys: number[]; fds: BackendFd[]; add: (key: number, fd: BackendFd | undefined) => void } {
    const keys: number[] = [];
    const fds: BackendFd[] = [];
    return {
      keys,
      fds,
      add: (k, f) => {
        if (f) {
          keys.push(k);
          fds.push(f);
        }
      },
    };
  }

  /** Records a memory slot of an attached VM (sends the memfd once). */
  slot(vm: RemoteSevVm, slot: number, gpa: bigint, size: number, mapping: MappingHandle | undefined, offset: number): void {
    if (size === 0 || !mapping) {
      this.request({ op: 'slot', vm: vm.id, slot, size: 0 });
      return;
    }
    let fd: BackendFd | undefined;
    const k = this.memOf(mapping, (_, f) => (fd = f));
    this.request({ op: 'slot', vm: vm.id, slot, gpa, size, mem: k.key, offset: k.offset + offset }, fd ? [fd] : []);
  }

  attach(vmType: number, vmFd: BackendFd, port: RemoteVmPort): RemoteSevVm {
    const r = this.request({ op: 'attach', vmType }, [vmFd]);
    return new RemoteSevVm(this, Number(r['vm']), port);
  }

  addVcpu(vm: RemoteSevVm): void {
    this.request({ op: 'vcpu', vm: vm.id });
  }

  /** A VM fd received from another process: hold its VM here too (undefined if not an attached VM). */
  adopt(vmFd: BackendFd): RemoteSevVm | undefined {
    const r = this.request({ op: 'adopt' }, [vmFd]);
    return r['vm'] === null ? undefined : new RemoteSevVm(this, Number(r['vm']), undefined);
  }

  openSev(write: boolean): RemoteSevFd {
    const r = this.request({ op: 'sevOpen', write });
    return new RemoteSevFd(this, Number(r['fd']), write);
  }

  sevIoctl(fd: RemoteSevFd, request: number, arg?: IoctlArg): number {
    if (fd.closed) throw errnoError(ERRNO.EBADF, 'ioctl');
    const mem = this.newMemfds();
    const { wire, back } = encodeArg(arg, (m) => this.memOf(m, mem.add));
    const r = this.request({ op: 'sevIoctl', fd: fd.fd, request, arg: wire, memKeys: mem.keys }, mem.fds);
    writeBack(back, r['back'] as string[]);
    if (r['failed']) throw errorFromWire(r['failed'] as WireError);
    return Number(r['result']);
  }

  status(): DaemonStatus {
    const r = this.request({ op: 'status' });
    return r as unknown as DaemonStatus;
  }

  /** Disconnects (the daemon releases everything this client held). */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.sock.close();
  }
}

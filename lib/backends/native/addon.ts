/**
 * The native addon's surface (native/*.cc), and its lazy loader. Nothing loads the addon until a
 * native-backed call needs it, so the package (and the mock) work where it could not be built.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { markAsUntransferable } from 'node:worker_threads';
import type { IoctlArg } from '../../uapi/ioctl-arg.js';
import type { BackendFd, GuestMapping, ReceivedFds, VcpuRunHandle } from '../../backend/contract.js';
import { errnoError, KvmSevError } from '../../backend/errors.js';

export interface NativeRequestInfo {
  name: string;
  request: number;
  arg: 'none' | 'int' | 'struct';
  struct: string | null;
  variable: boolean;
  returnsFd: boolean;
  nullArg: boolean;
  /** KVM writes the new fd into the struct at this offset (KVM_CREATE_DEVICE), -1 otherwise. */
  fdOut: number;
  fds: string[];
}

export interface NativePointerInfo {
  name: string;
  offset: number;
  lenOffset: number;
  lenSize: number;
  fixedLen: number;
  retained: boolean;
  selected: boolean;
  /** The paired length counts bits (BITS_TO_LONGS(len) * 8 bytes). */
  lenBits: boolean;
  /** A dirty bitmap of the memory slot named by the u32 at this offset (-1: not one). */
  slotOffset: number;
}

export interface NativeLayoutInfo {
  name: string;
  size: number;
  pointers: NativePointerInfo[];
}

/** A capability KVM_ENABLE_CAP may enable through the shim, and the fd kind that takes it ('vm' or 'vcpu'). */
export interface NativeEnableCapInfo {
  cap: number;
  name: string;
  fds: string;
}

export interface NativeAddon {
  abiVersion: number;
  /** The native fd class (instances come from open/ioctlFd/memfdCreate/sockets). */
  FdHandle: abstract new (...args: never[]) => BackendFd;
  open(path: string, writable: boolean): BackendFd;
  /** The ioctl entry points take the fd number of a live FdHandle (its `fd`), looked up natively. */
  ioctl(fd: number, request: number, arg?: IoctlArg): number;
  ioctlAsync(fd: number, request: number, arg?: IoctlArg): Promise<number>;
  ioctlFd(fd: number, request: number, arg?: IoctlArg): BackendFd;
  mmapAnonymous(size: number | bigint): GuestMapping;
  /** A memfd, sealed with `seals` (default F_SEAL_SHRINK: whoever maps it can trust its size). */
  memfdCreate(name: string, size: number | bigint, seals?: number): BackendFd;
  /** The F_SEAL_* bits of a memfd (F_GET_SEALS). */
  memfdSeals(fd: BackendFd): number;
  mmapShared(fd: BackendFd, size: number | bigint, offset?: number | bigint): GuestMapping;
  VcpuRunner: new (vcpu: BackendFd, mmapSize: number) => VcpuRunHandle;
  socketPair(): [BackendFd, BackendFd];
  unixListen(path: string): BackendFd;
  unixConnect(path: string): BackendFd;
  unixAccept(listener: BackendFd): Promise<BackendFd>;
  sendFds(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): Promise<number>;
  recvFds(socket: BackendFd, maxBytes: number, maxFds?: number): Promise<ReceivedFds>;
  /** sendFds on the calling thread (blocks until all of `data` is sent): for synchronous request/reply. */
  sendFdsSync(socket: BackendFd, data: Uint8Array, fds: readonly BackendFd[]): number;
  /**
   * One recvmsg on the calling thread, waiting up to `timeoutMs` (default: no limit; ETIMEDOUT) for
   * data: for synchronous request/reply. At most `maxFds` fds (default 0; more is EMSGSIZE).
   */
  recvSync(socket: BackendFd, maxBytes: number, maxFds?: number, timeoutMs?: number): ReceivedFds;
  /** Who is at the other end of a connected Unix socket (SO_PEERCRED). */
  peerCredentials(socket: BackendFd): { pid: number; uid: number; gid: number };
  /** Whether two fds of this process refer to the same open file (kcmp(2) KCMP_FILE). */
  sameFile(a: BackendFd, b: BackendFd): boolean;
  /** fd number, request, integer argument (NaN: a struct, in args), result: four entries per ioctl (native/ioctl.cc). */
  ioctlBatch(nums: Float64Array, args?: unknown[]): void;
  setErrorFactory(f: (errno: number, syscall: string, request?: string, path?: string) => Error): void;
  /** worker_threads.markAsUntransferable: applied to every guest-memory view (native/mapping.cc). */
  setMarkUntransferable(mark: (o: object) => void): void;
  /**
   * The KVM_SEV command-id table of one VM fd (by number): LOCAL_SEND/LOCAL_RECEIVE at these ids,
   * 0, 0 for upstream only. Kept in that fd's VM state; EBADF if closed, ERR_INVALID_ARG_VALUE if not a VM.
   */
  setSevCommandIds(vmFd: number, send: number, receive: number): void;
  /** What {@link setSevCommandIds} set for this VM fd (`[0, 0]`: upstream). */
  sevCommandIds(vmFd: number): [send: number, receive: number];
  /** For ids 0..255, the struct the shim lays out behind `kvm_sev_cmd.data` under that table (null: none). */
  describeSevCommands(send: number, receive: number): (string | null)[];
  describe(): { requests: NativeRequestInfo[]; layouts: NativeLayoutInfo[]; enableCaps: NativeEnableCapInfo[] };
  liveHandleCount(): number;
  eventfd(initval: number, semaphore: boolean): BackendFd;
  /** The eventfd entry points take the fd number, like ioctl. */
  eventfdWrite(fd: number, value: bigint): void;
  eventfdRead(fd: number): bigint;
  eventfdWait(fd: number): Promise<bigint>;
  eventfdCancel(fd: number): void;
  pread(fd: number, into: Uint8Array, position: number): number;
}

/** The package root: the nearest folder above this file with kvm-sev's package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'kvm-sev') return dir;
      } catch {
        /* keep walking */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('kvm-sev: cannot find the package root');
    dir = up;
  }
}

/** node-gyp-build's resolver (CommonJS, untyped): the first of build/Release, build/Debug, prebuilds/<platform>-<arch>/. */
interface NodeGypBuild {
  path(dir: string): string;
}

/**
 * Where the loader looks, in order. KVM_SEV_ADDON (a path to a kvm_sev.node) overrides; otherwise
 * node-gyp-build's order: a local build (build/Release, build/Debug, from `npm rebuild
 * --build-from-source` or a git clone's install), then the prebuilt binary the npm package ships.
 */
export function addonCandidates(): string[] {
  const env = process.env['KVM_SEV_ADDON'];
  if (env) return [resolve(env)];
  const root = packageRoot();
  return [join(root, 'build', 'Release'), join(root, 'build', 'Debug'), join(root, 'prebuilds', `${process.platform}-${process.arch}`)];
}

let cached: NativeAddon | undefined;
let cachedFile: string | undefined;
let failure: KvmSevError | undefined;

/** The native addon is unavailable: says what was tried and what to do. */
export class NativeUnavailableError extends KvmSevError {
  readonly tried: string[];
  constructor(reason: string, tried: string[]) {
    const help =
      process.platform !== 'linux' || process.arch !== 'x64'
        ? `kvm-sev's native backend needs x86-64 Linux (/dev/kvm, AMD SEV); on ${process.platform}-${process.arch} use the mock backend: openHost({ backend: 'mock' }).`
        : 'Build it with `npm rebuild kvm-sev --build-from-source` (needs python3, make and a C++17 compiler: apt-get install python3 make g++), ' +
          'or point KVM_SEV_ADDON at a built kvm_sev.node. The mock backend works without it.';
    super('ERR_KVM_SEV_NATIVE_UNAVAILABLE', `kvm-sev native addon unavailable: ${reason}. ${help}`);
    this.tried = tried;
  }
}

/** The addon file to load: KVM_SEV_ADDON's, else node-gyp-build's pick; a string says why there is none. */
function locate(require: NodeJS.Require): { file: string } | { why: string } {
  const env = process.env['KVM_SEV_ADDON'];
  if (env) {
    const file = resolve(env);
    return existsSync(file) ? { file } : { why: `${file} (KVM_SEV_ADDON): not found` };
  }
  try {
    return { file: (require('node-gyp-build') as NodeGypBuild).path(packageRoot()) };
  } catch (e) {
    // "No native build was found for platform=linux arch=x64 runtime=node abi=… libc=glibc …"
    return { why: (e as Error).message.split('\n')[0]!.trim() };
  }
}

/** Loads the addon once per thread; throws {@link NativeUnavailableError} with the reasons. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  if (failure) throw failure;
  const tried = addonCandidates();
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    failure = new NativeUnavailableError(`platform ${process.platform}-${process.arch}`, tried);
    throw failure;
  }
  const require = createRequire(import.meta.url);
  const where = locate(require);
  if ('why' in where) {
    failure = new NativeUnavailableError(where.why, tried);
    throw failure;
  }
  try {
    const a = require(where.file) as NativeAddon;
    a.setErrorFactory((errno, syscall, request, path) => errnoError(errno, syscall, request, path));
    // Guest-memory views are not V8's memory to count (native/mapping.cc): made so, the view object
    // alone holds the range, so they must not travel (postMessage copies them). Where
    // ArrayBuffer.prototype.transfer() exists (Node 22+, or 20 with --harmony-rab-gsab-transfer), a
    // view's memory could move to an object nothing watches: there views stay N-API's (counted).
    if (typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer !== 'function') a.setMarkUntransferable(markAsUntransferable);
    cached = a;
    cachedFile = where.file;
    return a;
  } catch (e) {
    failure = new NativeUnavailableError(`${where.file}: ${(e as Error).message}`, tried);
    throw failure;
  }
}

/** The file the addon was loaded from (a local build, a prebuild, or KVM_SEV_ADDON's), once loaded. */
export function addonFile(): string | undefined {
  return cachedFile;
}

/** True if the addon loads (never throws). */
export function addonAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

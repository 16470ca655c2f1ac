/**
 * Unix sockets of a mock host (socketpair, listen/connect/accept on paths of the host's own
 * namespace) and SCM_RIGHTS: a sent fd is a new reference to the same kernel file, installed as a
 * new fd number on receipt, as the kernel does. Two hosts share no paths.
 */
import type { ReceivedFds } from '../../../../backend/contract.js';
import { errnoError } from '../../../../backend/errors.js';
import { KernelFile, type FdTable, type MockFd } from './files.js';

interface Message {
  data: Uint8Array;
  files: KernelFile[];
}

export class SocketFile extends KernelFile {
  readonly kind = 'socket' as const;
  readonly path: string;
  peer: SocketFile | undefined;
  readonly queue: Message[] = [];
  readonly waiters: (() => void)[] = [];
  /** For a listener: connections waiting for accept(), and accept() calls waiting for them. */
  readonly backlog: SocketFile[] = [];
  readonly acceptors: ((s: SocketFile) => void)[] = [];
  readonly listening: boolean;
  private readonly onRelease: (() => void) | undefined;

  constructor(path: string, listening = false, onRelease?: () => void) {
    super();
    this.path = path;
    this.listening = listening;
    this.onRelease = onRelease;
  }

  wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  protected release(): void {
    for (const m of this.queue.splice(0)) for (const f of m.files) f.put();
    const p = this.peer;
    this.peer = undefined;
    if (p) {
      p.peer = undefined;
      p.wake();
    }
    this.onRelease?.();
  }
}

export class SocketLayer {
  private readonly paths = new Map<string, SocketFile>();
  private readonly fds: FdTable;

  constructor(fds: FdTable) {
    this.fds = fds;
  }

  pair(): [MockFd, MockFd] {
    const a = new SocketFile('socket:[pair]');
    const b = new SocketFile('socket:[pair]');
    a.peer = b;
    b.peer = a;
    return [this.fds.install(a), this.fds.install(b)];
  }

  listen(path: string): MockFd {
    if (this.paths.has(path)) throw errnoError(98, 'bind', undefined, path); // EADDRINUSE
    const l = new SocketFile(`socket:${path}`, true, () => this.paths.delete(path));
    this.paths.set(path, l);
    return this.fds.install(l);
  }

  connect(path: string): MockFd {
    const l = this.paths.get(path);
    if (!l || !l.open) throw errnoError(111, 'connect', undefined, path); // ECONNREFUSED
    const client = new SocketFile(`socket:${path}`);
    const server = new SocketFile(`socket:${path}`);
    client.peer = server;
    server.peer = client;
    server.get(); // held by the backlog until accepted
    const acc = l.acceptors.shift();
    if (acc) acc(server);
    else l.backlog.push(server);
    return this.fds.install(client);
  }

  accept(listener: SocketFile): Promise<MockFd> {
    const take = (s: SocketFile): MockFd => {
      const fd = this.fds.install(s);
      s.put();
      return fd;
    };
    const s = listener.backlog.shift();
    if (s) return Promise.resolve(take(s));
    return new Promise((resolve) => listener.acceptors.push((x) => resolve(take(x))));
  }

  send(sock: SocketFile, data: Uint8Array, files: KernelFile[]): number {
    const peer = sock.peer;
    if (!peer) throw errnoError(32, 'sendmsg'); // EPIPE
    for (const f of files) f.get();
    peer.queue.push({ data: data.slice(), files });
    peer.wake();
    return data.byteLength;
  }

  async recv(sock: SocketFile, maxBytes: number, maxFds: number): Promise<ReceivedFds> {
    while (sock.queue.length === 0) {
      if (!sock.peer) return { data: new Uint8Array(0), fds: [] }; // EOF
      await new Promise<void>((r) => sock.waiters.push(r));
    }
    const m = sock.queue.shift()!;
    const fds = m.files.slice(0, maxFds).map((f) => this.fds.install(f));
    for (const f of m.files) f.put(); // the in-flight references (extra fds are dropped: MSG_CTRUNC)
    return { data: m.data.subarray(0, maxBytes), fds };
  }
}

/**
 * Length-prefixed JSON messages over a Unix stream socket, with fds (SCM_RIGHTS) riding on a
 * message's first bytes: the wire format of the VMM handoff.
 */
import type { Backend, BackendFd } from './contract.js';
import { KvmSevError } from './errors.js';

export interface Message {
  body: Record<string, unknown>;
  fds: BackendFd[];
}

export async function sendMessage(
  backend: Backend,
  socket: BackendFd,
  body: Record<string, unknown>,
  fds: readonly BackendFd[] = [],
): Promise<void> {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  const frame = Buffer.alloc(4 + json.length);
  frame.writeUInt32LE(json.length, 0);
  json.copy(frame, 4);
  await backend.sendFds(socket, frame, fds);
}

/** What one reader accepts: a larger frame, or more fds waiting for their frame, is a protocol error. */
export interface ReaderLimits {
  /** The largest frame body, in bytes (default 256 MiB). */
  maxFrame?: number;
  /** fds received and not yet handed out with a frame (default 253 × 4). */
  maxFds?: number;
}

/**
 * A reader that keeps bytes that arrived beyond one message for the next. A frame's bytes are
 * copied once, when it is complete; its length is checked against the limit as soon as its header
 * arrives (so a peer announcing a huge frame is refused before it is buffered).
 */
export class MessageReader {
  private chunks: Buffer[] = [];
  private total = 0;
  private fds: BackendFd[] = [];
  private readonly maxFrame: number;
  private readonly maxFds: number;
  constructor(
    private readonly backend: Backend,
    private readonly socket: BackendFd,
    limits: ReaderLimits = {},
  ) {
    this.maxFrame = limits.maxFrame ?? 256 << 20;
    this.maxFds = limits.maxFds ?? 253 * 4;
  }

  async next(): Promise<Message> {
    for (;;) {
      const m = this.take();
      if (m) return m;
      const r = await this.backend.recvFds(this.socket, 1 << 20, 64);
      if (r.data.length === 0) {
        for (const f of r.fds) f.close();
        throw new KvmSevError('ERR_KVM_SEV_PEER_GONE', 'the other VMM closed the socket');
      }
      this.fds.push(...r.fds);
      if (this.fds.length > this.maxFds) this.fail(`${this.fds.length} fds arrived without their message (at most ${this.maxFds})`);
      this.chunks.push(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength));
      this.total += r.data.length;
    }
  }

  /** The fds received and not handed out yet are closed (the reader is done). */
  close(): void {
    for (const f of this.fds.splice(0)) f.close();
    this.chunks = [];
    this.total = 0;
  }

  private fail(why: string): never {
    this.close();
    throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', why);
  }

  private take(): Message | undefined {
    if (this.total < 4) return undefined;
    const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    const len = head.readUInt32LE(0);
    if (len > this.maxFrame) this.fail(`a message of ${len} bytes is too large (at most ${this.maxFrame})`);
    if (this.total < 4 + len) return undefined;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
    const body = JSON.parse(all.subarray(4, 4 + len).toString('utf8')) as Record<string, unknown>;
    const rest = all.subarray(4 + len);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.total = rest.length;
    const fds = this.fds;
    this.fds = [];
    return { body, fds };
  }
}

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

/** A reader that keeps bytes that arrived beyond one message for the next. */
export class MessageReader {
  private buf = Buffer.alloc(0);
  private fds: BackendFd[] = [];
  constructor(
    private readonly backend: Backend,
    private readonly socket: BackendFd,
  ) {}

  async next(): Promise<Message> {
    for (;;) {
      if (this.buf.length >= 4) {
        const len = this.buf.readUInt32LE(0);
        if (len > 256 << 20) throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `handoff message of ${len} bytes is too large`);
        if (this.buf.length >= 4 + len) {
          const body = JSON.parse(this.buf.subarray(4, 4 + len).toString('utf8')) as Record<string, unknown>;
          this.buf = this.buf.subarray(4 + len);
          const fds = this.fds;
          this.fds = [];
          return { body, fds };
        }
      }
      const r = await this.backend.recvFds(this.socket, 1 << 20, 64);
      if (r.data.length === 0) {
        for (const f of r.fds) f.close();
        throw new KvmSevError('ERR_KVM_SEV_PEER_GONE', 'the other VMM closed the socket');
      }
      this.buf = Buffer.concat([this.buf, r.data]);
      this.fds.push(...r.fds);
    }
  }
}

/**
 * The live-migration stream (docs/migration-stream.md): typed records over one byte stream (TCP, TLS
 * or a Unix socket), both directions on the same connection. A record is
 *
 *     type u8 | flags u8 | reserved u16 (0) | length u32 BE | payload (length bytes) | crc32 u32 BE
 *
 * The CRC-32 (IEEE) covers the 8-byte head and the payload, except for a private page, where it
 * covers the head and the page's address only: the firmware's packet (header ‖ trans) carries its own
 * MAC under the transport integrity key, which RECEIVE_UPDATE_DATA checks (AMD SEV API spec pub.
 * 55766, RECEIVE_UPDATE_DATA); a CRC over it would only hide that check behind a weaker one.
 * The CRC catches accidents on the plaintext records; TLS is what protects them from an attacker.
 */
import type { Duplex } from 'node:stream';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { KvmSevError } from '../../backend/errors.js';

/** The stream's version, in HELLO; a target refuses any other. */
export const STREAM_VERSION = 1;
export const STREAM_MAGIC = 'kvm-sev-live-migration';
export const PAGE_SIZE = 4096;
const HEAD = 8;

export const RECORD = Object.freeze({
  /** source → target, JSON: version, guest layout and policy. */
  HELLO: 0x01,
  /** target → source, binary: the target platform's PDH, PEK ‖ OCA ‖ CEK, ASK ‖ ARK. */
  PLATFORM: 0x02,
  /** source → target, JSON: policy, the source's PDH and the SEND_START session. */
  START: 0x03,
  /** target → source, JSON: RECEIVE_START done. */
  STARTED: 0x04,
  /** source → target: gpa u64 | header length u16 | SEND_UPDATE_DATA header | trans (one page). */
  PRIVATE_PAGE: 0x10,
  /** source → target: gpa u64 | the page's plaintext. */
  SHARED_PAGE: 0x11,
  /** source → target, JSON: end of a pre-copy round. */
  ROUND: 0x20,
  /** target → source, JSON: every page of that round is in place (flow control: what the stop will cost). */
  ROUND_DONE: 0x21,
  /** source → target, JSON: vCPUs, devices, page states, migration-control MSR, clock. */
  STATE: 0x30,
  /** source → target, JSON: the totals the target checks. */
  END: 0x31,
  /** target → source, JSON: everything received and checked (RECEIVE_FINISH done), or why not. */
  ACK: 0x40,
  /** source → target: SEND_FINISH done, the target owns the guest. */
  COMMIT: 0x41,
  /** either way, JSON: the sender gives up, with the reason. */
  ABORT: 0x7f,
} as const);

export type RecordType = (typeof RECORD)[keyof typeof RECORD];
const NAMES = new Map<number, string>(Object.entries(RECORD).map(([k, v]) => [v, k]));
export function recordName(type: number): string {
  return NAMES.get(type) ?? `0x${type.toString(16)}`;
}

/**
 * CRC-32 (IEEE 802.3), continuing from `crc`: zlib's (node:zlib crc32, in every Node this package
 * supports), since a byte-table loop in JS cost about as much per page as the socket itself.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  return zlibCrc32(data, crc);
}

/** How many payload bytes the CRC covers. */
function crcSpan(type: number, length: number): number {
  return type === RECORD.PRIVATE_PAGE ? Math.min(8, length) : length;
}

export interface StreamRecord {
  type: number;
  payload: Buffer;
}

/** Encodes one record (head, payload, CRC). */
export function encodeRecord(type: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEAD + payload.length + 4);
  encodeRecordInto(out, 0, type, payload.length, (b, o) => b.set(payload, o));
  return out;
}

/**
 * Writes one record at `at` in `out` (which must hold HEAD + length + 4 bytes there): the head, the
 * payload (`fill` writes its `length` bytes into `out` at the offset it is given), the CRC. Returns its size.
 */
export function encodeRecordInto(
  out: Buffer,
  at: number,
  type: number,
  length: number,
  fill: (out: Buffer, offset: number) => void,
): number {
  out[at] = type;
  out[at + 1] = 0;
  out.writeUInt16BE(0, at + 2);
  out.writeUInt32BE(length, at + 4);
  fill(out, at + HEAD);
  const crc = crc32(out.subarray(at + HEAD, at + HEAD + crcSpan(type, length)), crc32(out.subarray(at, at + HEAD)));
  out.writeUInt32BE(crc, at + HEAD + length);
  return HEAD + length + 4;
}

export function jsonRecord(type: number, body: unknown): Buffer {
  return encodeRecord(type, Buffer.from(JSON.stringify(body), 'utf8'));
}

export function privatePagePayload(gpa: bigint, header: Uint8Array, trans: Uint8Array): Buffer {
  const p = Buffer.allocUnsafe(10 + header.length + trans.length);
  p.writeBigUInt64BE(gpa, 0);
  p.writeUInt16BE(header.length, 8);
  p.set(header, 10);
  p.set(trans, 10 + header.length);
  return p;
}

export function decodePrivatePage(p: Buffer): { gpa: bigint; header: Uint8Array; trans: Uint8Array } {
  if (p.length < 10) throw protocolError('a PRIVATE_PAGE record shorter than its fixed part');
  const hl = p.readUInt16BE(8);
  if (p.length < 10 + hl) throw protocolError('a PRIVATE_PAGE record shorter than its header');
  return { gpa: p.readBigUInt64BE(0), header: p.subarray(10, 10 + hl), trans: p.subarray(10 + hl) };
}

export function sharedPagePayload(gpa: bigint, data: Uint8Array): Buffer {
  const p = Buffer.allocUnsafe(8 + data.length);
  p.writeBigUInt64BE(gpa, 0);
  p.set(data, 8);
  return p;
}

export function decodeSharedPage(p: Buffer): { gpa: bigint; data: Uint8Array } {
  if (p.length !== 8 + PAGE_SIZE) throw protocolError(`a SHARED_PAGE record of ${p.length} bytes (expected ${8 + PAGE_SIZE})`);
  return { gpa: p.readBigUInt64BE(0), data: p.subarray(8) };
}

export function protocolError(why: string): KvmSevError {
  return new KvmSevError('ERR_KVM_SEV_MIGRATION_PROTOCOL', `migration stream: ${why}`);
}

/** The largest record a reader accepts (a JSON STATE with many vCPUs stays far below). */
export const MAX_RECORD = 16 << 20;

/**
 * Splits a byte stream into records, checking each CRC. Synchronous core (`push` bytes, `take`
 * records) so that a test's proxy can parse a captured stream with the same code.
 */
export class RecordParser {
  private chunks: Buffer[] = [];
  private total = 0;

  push(data: Buffer): void {
    this.chunks.push(data);
    this.total += data.length;
  }

  /**
   * Joins the first chunks into one of at least `n` bytes (n <= total). Only those: joining all that is
   * buffered, for each record that straddles two reads, copied the whole backlog again and again.
   */
  private gather(n: number): void {
    let k = 0;
    let have = 0;
    while (have < n) have += this.chunks[k++]!.length;
    this.chunks.splice(0, k, Buffer.concat(this.chunks.slice(0, k), have));
  }

  /** The next complete record, or undefined. Throws on a bad CRC or an oversized record. */
  take(): (StreamRecord & { raw: Buffer }) | undefined {
    if (this.total < HEAD) return undefined;
    if (this.chunks[0]!.length < HEAD) this.gather(HEAD);
    const h = this.chunks[0]!;
    const len = h.readUInt32BE(4);
    if (len > MAX_RECORD) throw protocolError(`a ${recordName(h[0]!)} record of ${len} bytes (at most ${MAX_RECORD})`);
    const size = HEAD + len + 4;
    if (this.total < size) return undefined;
    if (h.length < size) this.gather(size);
    const all = this.chunks[0]!;
    const raw = all.subarray(0, size);
    const rest = all.subarray(size);
    this.chunks.shift();
    if (rest.length > 0) this.chunks.unshift(rest);
    this.total -= size;
    const type = raw[0]!;
    const want = raw.readUInt32BE(HEAD + len);
    const got = crc32(raw.subarray(HEAD, HEAD + crcSpan(type, len)), crc32(raw.subarray(0, HEAD)));
    if (want !== got) throw protocolError(`the CRC of a ${recordName(type)} record does not match (the stream was altered)`);
    return { type, payload: raw.subarray(HEAD, HEAD + len), raw };
  }
}

/** Bytes of queued records written in one call ({@link RecordChannel.sendQueued}). */
export const BATCH_BYTES = 256 * 1024;
/** Records received and not taken at which a channel stops reading, and at which it reads again. */
const QUEUE_HIGH = 512;
const QUEUE_LOW = 128;

/**
 * Records in and out of one duplex stream. `next()` resolves to the next record, rejects when the
 * peer closes or the stream fails; `send()` resolves once the bytes are handed to the kernel
 * (waiting for 'drain' when the socket's buffer is full: back-pressure).
 */
export class RecordChannel {
  private readonly parser = new RecordParser();
  private waiting: { resolve: (r: StreamRecord) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  // Records received and not yet taken: queue[head…]. Reading stops (socket.pause()) while
  // QUEUE_HIGH wait, and goes on once QUEUE_LOW do: a target slower than its source would otherwise
  // hold the whole guest in memory, and Array.shift() over such a backlog cost more than the pages.
  private queue: (StreamRecord | undefined)[] = [];
  private head = 0;
  private paused = false;
  private batch = Buffer.allocUnsafe(BATCH_BYTES);
  private used = 0;
  /** Bytes written and read, for progress and bandwidth. */
  bytesOut = 0;
  bytesIn = 0;

  constructor(readonly socket: Duplex) {
    socket.on('data', (d: Buffer) => {
      this.bytesIn += d.length;
      this.parser.push(d);
      try {
        for (let r = this.parser.take(); r; r = this.parser.take()) this.deliver({ type: r.type, payload: r.payload });
      } catch (e) {
        this.fail(e as Error);
        socket.destroy();
      }
    });
    socket.on('end', () => this.fail(new KvmSevError('ERR_KVM_SEV_PEER_GONE', 'migration stream: the other host closed the connection')));
    socket.on('close', () => this.fail(new KvmSevError('ERR_KVM_SEV_PEER_GONE', 'migration stream: the connection closed')));
    socket.on('error', (e: Error) =>
      this.fail(Object.assign(new KvmSevError('ERR_KVM_SEV_PEER_GONE', `migration stream: ${e.message}`), { cause: e })),
    );
  }

  private deliver(r: StreamRecord): void {
    const w = this.waiting;
    if (w) {
      this.waiting = undefined;
      w.resolve(r);
    } else {
      this.queue.push(r);
      if (!this.paused && this.queue.length - this.head >= QUEUE_HIGH) {
        this.paused = true;
        this.socket.pause();
      }
    }
  }

  private takeQueued(): StreamRecord | undefined {
    if (this.head === this.queue.length) return undefined;
    const r = this.queue[this.head];
    this.queue[this.head++] = undefined;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    if (this.paused && this.queue.length - this.head <= QUEUE_LOW) {
      this.paused = false;
      this.socket.resume();
    }
    return r;
  }

  private fail(e: Error): void {
    if (this.ended) return;
    this.ended = e;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(e);
  }

  /** The next record (records that arrived before the failure are still handed out first). */
  next(timeoutMs?: number): Promise<StreamRecord> {
    const q = this.takeQueued();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise<StreamRecord>((resolve, reject) => {
      let t: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined)
        t = setTimeout(() => {
          this.waiting = undefined;
          reject(new KvmSevError('ERR_KVM_SEV_TIMEOUT', `migration stream: no answer from the other host within ${timeoutMs} ms`));
        }, timeoutMs);
      this.waiting = {
        resolve: (r) => (clearTimeout(t), resolve(r)),
        reject: (e) => (clearTimeout(t), reject(e)),
      };
    });
  }

  /** A record already received, without waiting (an ABORT the peer sent while we were sending). */
  poll(): StreamRecord | undefined {
    return this.takeQueued();
  }

  /** The reason of an ABORT the peer sent and nobody has read yet (it explains a closed connection). */
  peerAbort(): string | undefined {
    const r = this.queue.find((q, i) => i >= this.head && q?.type === RECORD.ABORT);
    return r ? reasonOf(parseJson(r.payload)) : undefined;
  }

  get failed(): Error | undefined {
    return this.ended;
  }

  async send(type: number, payload: Uint8Array): Promise<void> {
    await this.flush();
    await this.write(encodeRecord(type, payload));
  }

  async sendJson(type: number, body: unknown): Promise<void> {
    await this.flush();
    await this.write(jsonRecord(type, body));
  }

  /**
   * Queues a record and writes the queue in one call once it holds {@link BATCH_BYTES}: page records
   * are 4 KiB, and a socket write per page cost more than the page's copy (a system call each, about
   * 12 µs here). Any other send, and {@link flush}, write what is queued first, so order is kept.
   */
  async sendQueued(type: number, payload: Uint8Array): Promise<void> {
    await this.queueRecord(type, payload.length, (b, o) => b.set(payload, o));
  }

  /** A SHARED_PAGE record, queued: the page goes from guest memory into the batch in one copy. */
  async sendQueuedSharedPage(gpa: bigint, page: Uint8Array): Promise<void> {
    await this.queueRecord(RECORD.SHARED_PAGE, 8 + page.length, (b, o) => {
      b.writeBigUInt64BE(gpa, o);
      b.set(page, o + 8);
    });
  }

  private async queueRecord(type: number, length: number, fill: (out: Buffer, offset: number) => void): Promise<void> {
    const n = HEAD + length + 4;
    if (this.used + n > this.batch.length) await this.flush();
    if (n > this.batch.length) {
      const out = Buffer.allocUnsafe(n);
      encodeRecordInto(out, 0, type, length, fill);
      await this.write(out);
      return;
    }
    this.used += encodeRecordInto(this.batch, this.used, type, length, fill);
    if (this.used >= BATCH_BYTES) await this.flush();
  }

  /** Writes the queued records. */
  async flush(): Promise<void> {
    if (this.used === 0) return;
    // The socket keeps the buffer until it is written: the next records go into a new one.
    const out = this.batch.subarray(0, this.used);
    this.batch = Buffer.allocUnsafe(BATCH_BYTES);
    this.used = 0;
    await this.write(out);
  }

  private async write(b: Buffer): Promise<void> {
    if (this.ended) throw this.ended;
    this.bytesOut += b.length;
    if (this.socket.write(b)) return;
    await new Promise<void>((resolve, reject) => {
      const onDrain = () => (cleanup(), resolve());
      const onClose = () => (
        cleanup(),
        reject(this.ended ?? new KvmSevError('ERR_KVM_SEV_PEER_GONE', 'migration stream: the connection closed'))
      );
      const cleanup = () => {
        this.socket.off('drain', onDrain);
        this.socket.off('close', onClose);
      };
      this.socket.on('drain', onDrain);
      this.socket.on('close', onClose);
    });
  }

  /** Expects a record of `type` (an ABORT becomes an error with the peer's reason). */
  async expect(type: number, timeoutMs?: number): Promise<Buffer> {
    const r = await this.next(timeoutMs);
    if (r.type === RECORD.ABORT) {
      throw new KvmSevError('ERR_KVM_SEV_MIGRATION_REFUSED', `the other host gave up: ${reasonOf(parseJson(r.payload))}`);
    }
    if (r.type !== type) throw protocolError(`expected ${recordName(type)}, got ${recordName(r.type)}`);
    return r.payload;
  }

  async expectJson(type: number, timeoutMs?: number): Promise<Record<string, unknown>> {
    return parseJson(await this.expect(type, timeoutMs));
  }

  close(): void {
    this.socket.destroy();
  }

  /**
   * Half-closes and reads on (discarding) until the peer closes too or `ms` pass: a socket closed
   * with unread bytes in it sends a reset, which can overtake the last record (an ABORT's reason).
   */
  async closeGracefully(ms = 1000): Promise<void> {
    if (this.socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.socket.once('close', () => (clearTimeout(t), resolve()));
      this.socket.end();
    });
    this.socket.destroy();
  }
}

export function parseJson(p: Uint8Array): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(p.buffer, p.byteOffset, p.byteLength).toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* below */
  }
  throw protocolError('a JSON record that is not a JSON object');
}

/** The reason a peer gave (ABORT's `reason`, a refused ACK's `error`). */
export function reasonOf(body: Record<string, unknown>, key = 'reason'): string {
  const v = body[key];
  return typeof v === 'string' ? v : 'no reason given';
}

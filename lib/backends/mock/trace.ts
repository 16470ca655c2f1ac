/**
 * The mock host's trace: one entry per ioctl, with the structs the kernel saw decoded by the codecs
 * (pointer fields show the fake user addresses), the nested `kvm_sev_cmd`/`sev_issue_cmd` data
 * decoded by command id, the result or errno with the firmware status, and the firmware commands the
 * call issued. `JSON.stringify(host.trace)` works: bigints become hex strings, bytes hex.
 */
import type { FdKind } from '../../backend/contract.js';

/** A firmware command issued during an ioctl (SEV_FW_CMD name) and its status. */
export interface TraceFirmwareCall {
  readonly command: string;
  readonly status: number;
}

export interface TraceEntry {
  /** Sequence number within the host, from 1. */
  readonly seq: number;
  readonly fd: number;
  readonly fdKind: FdKind | 'closed';
  /** 'KVM_MEMORY_ENCRYPT_OP', 'SEV_ISSUE_CMD', … */
  readonly request: string;
  readonly async: boolean;
  /** An integer argument. */
  arg?: number | bigint;
  /** The root struct as the kernel read it, and as it was written back. */
  in?: Record<string, unknown>;
  out?: Record<string, unknown>;
  /** For KVM_MEMORY_ENCRYPT_OP / SEV_ISSUE_CMD: the command's name and its data struct. */
  command?: string;
  dataIn?: Record<string, unknown>;
  dataOut?: Record<string, unknown>;
  /** The non-negative result, or the errno name ('EIO'). */
  result?: number;
  errno?: string;
  /** The `error` word written back (firmware status), for SEV commands. */
  fwError?: number;
  readonly firmware: TraceFirmwareCall[];
}

const MAX_HEX = 256;

/** JSON-safe copy: bigint → '0x…', Uint8Array → hex (long ones cut, with their length). */
export function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (v instanceof Uint8Array) {
    const hex = Buffer.from(v.subarray(0, MAX_HEX)).toString('hex');
    return v.byteLength > MAX_HEX ? `${hex}… (${v.byteLength} bytes)` : hex;
  }
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (typeof v === 'object' && v !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = jsonSafe(x);
    return out;
  }
  return v;
}

/** The recorded entries of one host. */
export class MockTrace {
  readonly entries: TraceEntry[] = [];
  /** Also handed each entry as it completes. */
  private readonly sink: ((e: TraceEntry) => void) | undefined;
  readonly enabled: boolean;
  private seq = 0;

  constructor(option: boolean | ((e: TraceEntry) => void) | undefined) {
    this.enabled = option !== undefined && option !== false;
    this.sink = typeof option === 'function' ? option : undefined;
  }

  /** @internal */
  begin(fd: number, fdKind: FdKind | 'closed', request: string, async: boolean): TraceEntry {
    return { seq: ++this.seq, fd, fdKind, request, async, firmware: [] };
  }

  /** @internal */
  commit(e: TraceEntry): void {
    this.entries.push(e);
    this.sink?.(e);
  }

  clear(): void {
    this.entries.length = 0;
  }

  toJSON(): unknown {
    return this.entries.map(jsonSafe);
  }
}

/**
 * The shared mock SEV service's wire format: length-prefixed JSON (framing.ts) with a tagged
 * encoding for what JSON lacks (bigint, bytes, Map), and ioctl arguments as trees.
 *
 * An ioctl argument travels as its {@link IoctlStruct} tree: struct bytes and JS buffers inline
 * (base64), guest-memory ranges as `{ mem, offset, length }` (a memfd the daemon has mapped, by the
 * client's key, and an offset into that memfd). After the call the daemon sends back every struct's
 * and buffer's bytes in tree order, and the client writes them into its own objects (the contract's
 * write-back); guest memory is shared, so it needs nothing.
 */
import { KvmError, errnoError, KvmSevError } from '../../../backend/errors.js';
import {
  ioctlStruct,
  isIoctlStruct,
  isMappingRange,
  mappingRange,
  type IoctlArg,
  type IoctlStruct,
  type MappingHandle,
  type PointerTarget,
} from '../../../uapi/ioctl-arg.js';

/**
 * The largest frame either side accepts (16 MiB of JSON). Guest memory travels by memfd, never in a
 * frame: what does travel inline is structs and JS buffers (certificates, a DBG_* buffer, a page of
 * SEND/RECEIVE_UPDATE_DATA), base64-encoded.
 */
export const MAX_FRAME = 16 << 20;

/** JSON with bigint ({$b}), bytes ({$u}) and Map ({$m}). */
export function toWire(v: unknown): unknown {
  if (typeof v === 'bigint') return { $b: v.toString(16) };
  if (v instanceof Uint8Array) return { $u: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  if (v instanceof Map) return { $m: [...v.entries()].map(([k, x]) => [toWire(k), toWire(x)]) };
  if (Array.isArray(v)) return v.map(toWire);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toWire(x)]));
  return v;
}

export function fromWire(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromWire);
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    if (typeof o['$b'] === 'string') return BigInt(`0x${o['$b']}`.replace('0x-', '-0x'));
    if (typeof o['$u'] === 'string') return new Uint8Array(Buffer.from(o['$u'], 'base64'));
    if (Array.isArray(o['$m'])) return new Map((o['$m'] as unknown[][]).map(([k, x]) => [fromWire(k), fromWire(x)]));
    return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, fromWire(x)]));
  }
  return v;
}

type WireTarget = { s: WireStruct } | { u: string; ab?: true } | { mem: number; offset: number; length: number };
interface WireStruct {
  bytes: string;
  fixups: { offset: number; target: WireTarget }[];
}
export type WireArg = { int: number } | { s: WireStruct } | null;

const b64 = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64');

function bytesOf(t: ArrayBufferView | ArrayBuffer): Uint8Array {
  return t instanceof ArrayBuffer ? new Uint8Array(t) : new Uint8Array(t.buffer, t.byteOffset, t.byteLength);
}

/**
 * Client side: the argument as a tree, and the byte arrays to write back into (tree order).
 * `memOf` names a guest-memory mapping as (memfd key, offset of the mapping in the memfd).
 */
export function encodeArg(
  arg: IoctlArg,
  memOf: (m: MappingHandle) => { key: number; offset: number },
): { wire: WireArg; back: Uint8Array[] } {
  const back: Uint8Array[] = [];
  if (arg === undefined) return { wire: null, back };
  if (typeof arg === 'number') return { wire: { int: arg }, back };
  if (!isIoctlStruct(arg)) return { wire: { int: arg }, back }; // the daemon's marshaller rejects it as the shim would
  const st = (s: IoctlStruct): WireStruct => {
    back.push(s.bytes);
    return { bytes: b64(s.bytes), fixups: s.fixups.map((f) => ({ offset: f.offset, target: tgt(f.target) })) };
  };
  const tgt = (t: PointerTarget): WireTarget => {
    if (isIoctlStruct(t)) return { s: st(t) };
    if (isMappingRange(t)) {
      const m = memOf(t.mapping);
      return { mem: m.key, offset: m.offset + t.offset, length: t.length };
    }
    const u = bytesOf(t);
    back.push(u);
    return t instanceof ArrayBuffer ? { u: b64(u), ab: true } : { u: b64(u) };
  };
  return { wire: { s: st(arg) }, back };
}

/** Daemon side: the argument rebuilt over the daemon's mappings, and the arrays to send back. */
export function decodeArg(wire: WireArg, mem: (key: number) => MappingHandle): { arg: IoctlArg; back: Uint8Array[] } {
  const back: Uint8Array[] = [];
  if (wire === null) return { arg: undefined, back };
  if ('int' in wire) return { arg: wire.int, back };
  const st = (s: WireStruct): IoctlStruct => {
    const bytes = new Uint8Array(Buffer.from(s.bytes, 'base64'));
    back.push(bytes);
    return ioctlStruct(
      bytes,
      s.fixups.map((f) => ({ offset: f.offset, target: tgt(f.target) })),
    );
  };
  const tgt = (t: WireTarget): PointerTarget => {
    if ('s' in t) return st(t.s);
    if ('mem' in t) return mappingRange(mem(t.mem), t.offset, t.length);
    const u = new Uint8Array(Buffer.from(t.u, 'base64'));
    back.push(u);
    return t.ab ? u.buffer : u;
  };
  return { arg: st(wire.s), back };
}

/** Client side: copy the daemon's written-back bytes into the caller's objects. */
export function writeBack(back: Uint8Array[], got: string[] | undefined): void {
  if (!got) return;
  for (let i = 0; i < back.length && i < got.length; i++) back[i]!.set(Buffer.from(got[i]!, 'base64').subarray(0, back[i]!.byteLength));
}

export const encodeBack = (back: Uint8Array[]): string[] => back.map(b64);

export interface WireError {
  errno?: number;
  syscall?: string;
  request?: string;
  name: string;
  code?: string;
  message: string;
}

export function errorToWire(e: unknown): WireError {
  if (e instanceof KvmError)
    return {
      errno: e.errno,
      syscall: e.syscall,
      ...(e.request ? { request: e.request } : {}),
      name: e.name,
      code: e.code,
      message: e.message,
    };
  const x = e as { name?: string; code?: string; message?: string };
  return { name: x?.name ?? 'Error', ...(x?.code ? { code: x.code } : {}), message: x?.message ?? String(e) };
}

export function errorFromWire(w: WireError): Error {
  if (w.errno !== undefined) return errnoError(w.errno, w.syscall ?? 'ioctl', w.request);
  if (w.name === 'KvmSevError' && w.code) return new KvmSevError(w.code, w.message);
  const E = w.name === 'TypeError' ? TypeError : w.name === 'RangeError' ? RangeError : Error;
  const err = new E(w.message) as Error & { code?: string };
  if (w.code) err.code = w.code;
  return err;
}

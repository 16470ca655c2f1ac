/**
 * Struct codecs: byte-exact encoders/decoders for kernel uapi structs.
 *
 * A codec is declared once from the C field list (`defineStruct`); offsets, size and alignment are
 * computed with C's natural alignment rules for x86_64 (u64 aligned to 8, tail padding to the struct's
 * alignment), or back to back when `packed`. Everything is little-endian.
 *
 * Three directions:
 * - `encode(value)`: value → bytes. Pointer fields take a raw address (bigint), for mocks and tests.
 * - `decode(bytes)`: bytes → value. 64-bit fields always decode to bigint.
 * - `arg(value)`: value → {@link IoctlStruct} for a real ioctl. Pointer fields take a
 *   {@link PointerTarget} (or null); the bytes keep 0 there and a {@link Fixup} names the target, so
 *   JS never handles a user-space address. Paired length fields are filled in from the target.
 *
 * Input is validated before a single byte is written: a bad value throws a Node-style error from
 * errors.ts and leaves `into` untouched.
 */

import { invalidArgType, invalidArgValue, outOfRange } from './errors.js';
import { type Fixup, type IoctlStruct, type PointerTarget, ioctlStruct, isIoctlStruct, isMappingRange, targetLength } from './ioctl-arg.js';

// ------------------------------------------------------------------------------------------------
// Field types

/** What kind of C type a field is. */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'i32' | 'i64' | 'bytes' | 'array' | 'struct' | 'ptr' | 'pad';

type Mode = 'encode' | 'arg';

/**
 * A field type. `D` is what `decode` gives, `E` what `encode` accepts, `A` what `arg` accepts.
 * The three `__` members are type-level only (never set).
 */
export interface FieldType<D, E = D, A = E> {
  readonly kind: FieldKind;
  /** Bytes on the wire. */
  readonly size: number;
  /** C alignment on x86_64. */
  readonly align: number;
  /** C-like spelling: `'u32'`, `'u8[16]'`, `'u64[4]'`, `'struct kvm_segment'`, `'ptr'`, `'pad'`. */
  readonly typeName: string;
  readonly __decoded?: D;
  readonly __encode?: (value: E) => void;
  readonly __arg?: (value: A) => void;
}

/** Any field type (the constraint used by `defineStruct`). */
export type AnyFieldType = FieldType<unknown, never, never>;

/** A `pad(n)` field: occupies bytes, absent from the value object. */
export interface PadFieldType extends FieldType<never, never, never> {
  readonly kind: 'pad';
}

/** Internal behaviour behind a {@link FieldType}. */
interface FieldImpl {
  readonly kind: FieldKind;
  readonly size: number;
  readonly align: number;
  readonly typeName: string;
  /**
   * Validate `v` and return what `write` needs. `undefined` in → `undefined` out (zero).
   * The error path is `join(path, key)`, built only when throwing (this runs on hot paths).
   */
  prepare(v: unknown, path: string, key: string | number, mode: Mode): unknown;
  write(dv: DataView, u8: Uint8Array, off: number, p: unknown): void;
  read(dv: DataView, u8: Uint8Array, off: number): unknown;
  /** Append the fix-ups of an arg-mode prepared value at byte `base`. */
  fixups?(p: unknown, base: number, out: Fixup[]): void;
  /** A nested struct (count 1) or an array of structs: its codec, for layout walks. */
  nested?: { readonly codec: AnyStructCodec; readonly count: number };
}

/** `a.b` for a field name, `a[3]` for an array index. */
function join(path: string, key: string | number): string {
  return typeof key === 'number' ? `${path}[${key}]` : `${path}.${key}`;
}

function impl(t: AnyFieldType): FieldImpl {
  return t as unknown as FieldImpl;
}

function intRange(min: number | bigint, max: number | bigint): string {
  return `an integer >= ${min} && <= ${max}`;
}

function smallInt(
  kind: 'u8' | 'u16' | 'u32' | 'i32',
  size: number,
  min: number,
  max: number,
  read: (dv: DataView, u8: Uint8Array, off: number) => number,
  write: (dv: DataView, u8: Uint8Array, off: number, v: number) => void,
): FieldType<number> {
  const f: FieldImpl = {
    kind,
    size,
    align: size,
    typeName: kind,
    prepare(v, path, key) {
      if (v === undefined) return undefined;
      if (typeof v !== 'number') throw invalidArgType(join(path, key), 'number', v);
      if (!Number.isInteger(v) || v < min || v > max) throw outOfRange(join(path, key), intRange(min, max), v);
      return v;
    },
    write(dv, u8, off, p) {
      if (p !== undefined) write(dv, u8, off, p as number);
    },
    read,
  };
  return f;
}

/** `__u8` */
export const u8: FieldType<number> = smallInt(
  'u8',
  1,
  0,
  0xff,
  (_dv, b, o) => b[o]!,
  (_dv, b, o, v) => {
    b[o] = v;
  },
);
/** `__u16` */
export const u16: FieldType<number> = smallInt(
  'u16',
  2,
  0,
  0xffff,
  (dv, _b, o) => dv.getUint16(o, true),
  (dv, _b, o, v) => dv.setUint16(o, v, true),
);
/** `__u32` */
export const u32: FieldType<number> = smallInt(
  'u32',
  4,
  0,
  0xffffffff,
  (dv, _b, o) => dv.getUint32(o, true),
  (dv, _b, o, v) => dv.setUint32(o, v, true),
);
/** `__s32` */
export const i32: FieldType<number> = smallInt(
  'i32',
  4,
  -0x80000000,
  0x7fffffff,
  (dv, _b, o) => dv.getInt32(o, true),
  (dv, _b, o, v) => dv.setInt32(o, v, true),
);

const U64_MAX = 0xffffffffffffffffn;
const I64_MIN = -0x8000000000000000n;
const I64_MAX = 0x7fffffffffffffffn;

/** Validate a 64-bit value given as bigint or safe-integer Number; returns it unchanged. */
function prepare64(v: unknown, path: string, key: string | number, signed: boolean): bigint | number {
  if (typeof v === 'bigint') {
    if (signed ? v < I64_MIN || v > I64_MAX : v < 0n || v > U64_MAX) {
      throw outOfRange(join(path, key), signed ? intRange(I64_MIN, I64_MAX) : intRange(0, U64_MAX), v);
    }
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) {
      throw outOfRange(join(path, key), `a safe integer (use a bigint beyond 2^53)${signed ? '' : ' >= 0'}`, v);
    }
    if (!signed && v < 0) throw outOfRange(join(path, key), intRange(0, U64_MAX), v);
    return v;
  }
  throw invalidArgType(join(path, key), 'bigint or number', v);
}

function write64(dv: DataView, off: number, v: bigint | number, signed: boolean): void {
  if (typeof v === 'bigint') {
    if (signed) dv.setBigInt64(off, v, true);
    else dv.setBigUint64(off, v, true);
    return;
  }
  // Safe integer Number: split without a BigInt allocation. Negative values use two's complement.
  let lo: number;
  let hi: number;
  if (v >= 0) {
    lo = v % 0x100000000;
    hi = (v - lo) / 0x100000000;
  } else {
    const a = -v;
    const alo = a % 0x100000000;
    const ahi = (a - alo) / 0x100000000;
    lo = (0x100000000 - alo) % 0x100000000;
    hi = (0xffffffff - ahi + (alo === 0 ? 1 : 0)) >>> 0;
  }
  dv.setUint32(off, lo, true);
  dv.setUint32(off + 4, hi, true);
}

function int64(kind: 'u64' | 'i64'): FieldType<bigint, bigint | number> {
  const signed = kind === 'i64';
  const f: FieldImpl = {
    kind,
    size: 8,
    align: 8,
    typeName: kind,
    prepare(v, path, key) {
      return v === undefined ? undefined : prepare64(v, path, key, signed);
    },
    write(dv, _u8, off, p) {
      if (p !== undefined) write64(dv, off, p as bigint | number, signed);
    },
    read: signed ? (dv, _u8, off) => dv.getBigInt64(off, true) : (dv, _u8, off) => dv.getBigUint64(off, true),
  };
  return f;
}

/** `__u64` (decodes to bigint; encodes bigint or a non-negative safe-integer Number) */
export const u64: FieldType<bigint, bigint | number> = int64('u64');
/** `__s64` */
export const i64: FieldType<bigint, bigint | number> = int64('i64');

/** `__u8 name[n]` as a Uint8Array of exactly `n` bytes (decode returns a copy). */
export function bytes(n: number): FieldType<Uint8Array> {
  checkCount('n', n, 1);
  const f: FieldImpl = {
    kind: 'bytes',
    size: n,
    align: 1,
    typeName: `u8[${n}]`,
    prepare(v, path, key) {
      if (v === undefined) return undefined;
      if (!(v instanceof Uint8Array)) throw invalidArgType(join(path, key), 'an instance of Uint8Array', v);
      if (v.byteLength !== n) throw invalidArgValue(join(path, key), v, `must be exactly ${n} bytes long (it is ${v.byteLength})`);
      return v;
    },
    write(_dv, u8a, off, p) {
      if (p !== undefined) u8a.set(p as Uint8Array, off);
    },
    read(_dv, u8a, off) {
      return u8a.slice(off, off + n);
    },
  };
  return f;
}

/**
 * `type name[n]`: a JS array. Encoding accepts up to `n` elements (missing ones are 0); decoding
 * always gives `n`.
 */
export function array<D, E, A>(
  type: FieldType<D, E, A>,
  n: number,
): FieldType<D[], readonly (E | undefined)[], readonly (A | undefined)[]> {
  checkCount('n', n, 1);
  const el = impl(type);
  if (el.kind === 'pad') throw invalidArgValue('type', el.typeName, 'cannot be an array element');
  if (el.kind === 'ptr') throw invalidArgValue('type', el.typeName, 'cannot be an array element (no pointer arrays in the uapi)');
  const stride = el.size;
  const f: FieldImpl = {
    kind: 'array',
    size: stride * n,
    align: el.align,
    typeName: `${el.typeName}[${n}]`,
    prepare(v, path, key, mode) {
      if (v === undefined) return undefined;
      const here = join(path, key);
      if (!Array.isArray(v)) throw invalidArgType(here, 'an instance of Array', v);
      if (v.length > n) throw outOfRange(`${here}.length`, `<= ${n}`, v.length);
      const out = new Array<unknown>(v.length);
      for (let i = 0; i < v.length; i++) out[i] = el.prepare(v[i], here, i, mode);
      return out;
    },
    write(dv, u8a, off, p) {
      if (p === undefined) return;
      const arr = p as unknown[];
      for (let i = 0; i < arr.length; i++) el.write(dv, u8a, off + i * stride, arr[i]);
    },
    read(dv, u8a, off) {
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) out[i] = el.read(dv, u8a, off + i * stride);
      return out;
    },
  };
  if (el.nested?.count === 1) f.nested = { codec: el.nested.codec, count: n };
  if (el.fixups) {
    const elFix = el.fixups.bind(el);
    f.fixups = (p, base, out) => {
      if (p === undefined) return;
      const arr = p as unknown[];
      for (let i = 0; i < arr.length; i++) elFix(arr[i], base + i * stride, out);
    };
  }
  return f;
}

/** A nested struct, by value. */
export function struct<T, E, A>(codec: StructCodec<T, E, A>): FieldType<T, Partial<E>, Partial<A>> {
  const c = codecImpl(codec);
  const f: FieldImpl = {
    kind: 'struct',
    size: c.size,
    align: c.align,
    typeName: `struct ${c.name}`,
    prepare(v, path, key, mode) {
      return v === undefined ? undefined : c.prepareObject(v, join(path, key), mode);
    },
    write(dv, u8a, off, p) {
      if (p !== undefined) c.writePrepared(dv, u8a, off, p as unknown[]);
    },
    read(dv, u8a, off) {
      return c.readAt(dv, u8a, off);
    },
    nested: { codec: codec as unknown as AnyStructCodec, count: 1 },
  };
  if (c.pointers.length > 0 || c.hasNestedPointers) {
    f.fixups = (p, base, out) => {
      if (p !== undefined) c.collectFixups(p as unknown[], base, out);
    };
  }
  return f;
}

/** `padN` / `reserved`: explicit padding, written as zero, absent from the value object. */
export function pad(n: number): PadFieldType {
  checkCount('n', n, 1);
  const f: FieldImpl = {
    kind: 'pad',
    size: n,
    align: 1,
    typeName: 'pad',
    prepare() {
      return undefined;
    },
    write() {
      /* zero-filled by the struct */
    },
    read() {
      return undefined;
    },
  };
  return f as unknown as PadFieldType;
}

/** Options of {@link ptr}. */
export interface PtrOptions<C extends AnyStructCodec | undefined = undefined> {
  /**
   * Name of the paired length field (u32 or u64) that says how many bytes the kernel accesses.
   * `arg()` fills it with the target's length when the value omits it, and refuses a given length
   * larger than the target. Several pointers may share one length (kvm_sev_dbg): the smallest target wins.
   */
  readonly len?: string;
  /** The kernel accesses exactly this many bytes: the target must be at least that long. */
  readonly fixedLen?: number;
  /**
   * `'bits'`: the paired `len` counts bits (pages of a dirty bitmap, MSRs of a filter range) and the
   * kernel accesses `BITS_TO_LONGS(len) * 8` bytes. `arg()` never fills such a length in (it means
   * something): a given one is checked against the target.
   */
  readonly lenUnit?: 'bits';
  /**
   * The kernel writes one bit per page of the memory slot named by this u32 field, rounded up to
   * 64 bits (KVM_GET_DIRTY_LOG): only the backend knows the slot's size, so it checks the target.
   */
  readonly memslotBitmap?: string;
  /** The pointer points at a struct of this type (a plain object is encoded with it). */
  readonly struct?: C;
  /**
   * The kernel keeps the address after the call (memslot userspace_addr, kvm_enc_region.addr): only a
   * guest-memory {@link MappingRange} may be the target, never a JS buffer that the GC could move or free.
   */
  readonly retained?: true;
  /**
   * The pointed-to struct depends on another field of this struct (`kvm_sev_cmd.data` by `id`,
   * `sev_issue_cmd.data` by `cmd`). `select` maps that field's value to the codec (null: no data; undefined: unknown).
   */
  readonly selectBy?: string;
  readonly select?: (key: number) => AnyStructCodec | null | undefined;
}

/**
 * What `arg()` accepts in a pointer field with options `O`: a target or NULL, plus a plain value object
 * for struct pointers (typed by the codec) and `selectBy` pointers (checked at run time).
 */
export type PtrArgValue<O> =
  | PointerTarget
  | null
  | 0
  | 0n
  | (O extends { readonly struct: infer C }
      ? C extends StructCodec<unknown, never, infer CA>
        ? Partial<CA>
        : never
      : O extends { readonly selectBy: string }
        ? { readonly [field: string]: unknown }
        : never);

/** Internal: a pointer field keeps its options for the enclosing struct to resolve. */
interface PtrImpl extends FieldImpl {
  readonly opts: PtrOptions<AnyStructCodec | undefined>;
}

/** A user-space pointer (`__u64 xxx_uaddr`): 8 bytes on the wire, see {@link PtrOptions}. */
export function ptr<const O extends PtrOptions<AnyStructCodec | undefined> = PtrOptions>(
  opts: O = {} as O,
): FieldType<bigint, bigint | number | null, PtrArgValue<O>> {
  if (opts.fixedLen !== undefined) checkCount('opts.fixedLen', opts.fixedLen, 1);
  if (opts.lenUnit !== undefined && (opts.lenUnit !== 'bits' || opts.len === undefined))
    throw invalidArgValue('opts.lenUnit', opts.lenUnit, "must be 'bits', with a paired len");
  if (opts.select !== undefined && opts.selectBy === undefined) throw invalidArgValue('opts.select', 'function', 'needs opts.selectBy');
  const f: PtrImpl = {
    kind: 'ptr',
    size: 8,
    align: 8,
    typeName: 'ptr',
    opts: opts,
    prepare(v, path, key, mode) {
      if (v === undefined || v === null) return undefined;
      if (mode === 'encode') return prepare64(v, path, key, false);
      if (v === 0 || v === 0n) return undefined;
      if (typeof v === 'bigint' || typeof v === 'number') {
        throw invalidArgValue(
          join(path, key),
          v,
          'must be a pointer target (ArrayBufferView, ArrayBuffer, MappingRange or IoctlStruct) or null, never a raw address',
        );
      }
      if (typeof v !== 'object') {
        throw invalidArgType(join(path, key), 'an ArrayBufferView, ArrayBuffer, MappingRange, IoctlStruct or null', v);
      }
      return v; // resolved (plain objects encoded, sizes checked) by the enclosing struct
    },
    write(dv, _u8, off, p) {
      if (typeof p === 'bigint' || typeof p === 'number') write64(dv, off, p, false);
    },
    read(dv, _u8, off) {
      return dv.getBigUint64(off, true);
    },
    fixups(p, base, out) {
      if (p !== undefined && typeof p === 'object') out.push({ offset: base, target: p as PointerTarget });
    },
  };
  return f;
}

function checkCount(name: string, n: unknown, min: number): void {
  if (typeof n !== 'number') throw invalidArgType(name, 'number', n);
  if (!Number.isSafeInteger(n) || n < min) throw outOfRange(name, `an integer >= ${min}`, n);
}

// ------------------------------------------------------------------------------------------------
// Struct codecs

/** Layout of one field. */
export interface FieldInfo {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  /** See {@link FieldType.typeName}. */
  readonly type: string;
  readonly kind: FieldKind;
  /** Only for `ptr` fields. */
  readonly pointer?: PointerInfo;
  /** A nested struct (count 1) or an array of `count` structs (stride `codec.size`), e.g. kvm_msr_filter.ranges. */
  readonly nested?: { readonly codec: AnyStructCodec; readonly count: number };
}

/** A named sibling field (a pointer's length or selector). */
export interface FieldRef {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
}

/** What a native backend needs to know about a pointer field. */
export interface PointerInfo {
  readonly len?: FieldRef;
  readonly fixedLen?: number;
  /** The paired length counts bits: the target holds `BITS_TO_LONGS(len) * 8` bytes. */
  readonly lenBits?: true;
  /** The kernel writes a bitmap of the memory slot named by this field (KVM_GET_DIRTY_LOG). */
  readonly memslotBitmap?: FieldRef;
  readonly retained?: true;
  readonly selectBy?: FieldRef;
  readonly struct?: AnyStructCodec;
}

/** Options of {@link defineStruct}. */
export interface StructOptions {
  /** `__attribute__((packed))`: no padding, alignment 1 (unless `align` says otherwise). */
  readonly packed?: true;
  /** Assert the computed size (a definition error otherwise). */
  readonly size?: number;
  /** Override the struct's alignment (and so its tail padding). */
  readonly align?: number;
}

/** A struct codec; see the module comment. `T` decoded, `E` encode input, `A` arg input. */
export interface StructCodec<T, E = T, A = E> {
  /** The kernel's struct name (`'kvm_sev_cmd'`). */
  readonly name: string;
  /** `sizeof`. */
  readonly size: number;
  /** `_Alignof`. */
  readonly align: number;
  readonly packed: boolean;
  /** Every field, pads included, in declaration order. */
  readonly fields: readonly FieldInfo[];
  /** The `ptr` fields (top level only; nested ones are reachable through `fields`' codecs). */
  readonly pointers: readonly FieldInfo[];
  /** This codec as a field type (same as `struct(codec)`). */
  readonly type: FieldType<T, Partial<E>, Partial<A>>;
  /** `offsetof`; throws ERR_INVALID_ARG_VALUE for an unknown field. */
  offsetOf(field: string): number;
  /** The field's layout; throws ERR_INVALID_ARG_VALUE for an unknown field. */
  field(name: string): FieldInfo;
  /** Encode into a new buffer, or into `into` at `at` (the whole `size` bytes are overwritten). */
  encode(value: Partial<E>, into?: Uint8Array, at?: number): Uint8Array;
  /** Decode `size` bytes at `at`. */
  decode(bytes: Uint8Array, at?: number): T;
  /** Build an ioctl argument (pointer fields as fix-ups). */
  arg(value: Partial<A>): IoctlStruct;
}

/** A codec of any struct. */
export type AnyStructCodec = StructCodec<unknown, never, never>;

/** A field list entry: `[name, type]`. */
export type FieldSpec = readonly [name: string, type: AnyFieldType];

type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ValueFields<Fs extends readonly FieldSpec[]> = Exclude<Fs[number], readonly [string, PadFieldType]>;
/** The decoded value of a field list. */
export type DecodedOf<Fs extends readonly FieldSpec[]> = Simplify<{
  [F in ValueFields<Fs> as F[0]]: F[1] extends FieldType<infer D, never, never> ? D : never;
}>;
/** What `encode` accepts for a field list (before `Partial`). */
export type EncodeOf<Fs extends readonly FieldSpec[]> = Simplify<{
  [F in ValueFields<Fs> as F[0]]: F[1] extends FieldType<unknown, infer E, never> ? E : never;
}>;
/** What `arg` accepts for a field list (before `Partial`). */
export type ArgOf<Fs extends readonly FieldSpec[]> = Simplify<{
  [F in ValueFields<Fs> as F[0]]: F[1] extends FieldType<unknown, never, infer A> ? A : never;
}>;
/** The decoded type of a codec. */
export type ValueOf<C> = C extends StructCodec<infer T, never, never> ? T : never;
/** The `encode` input of a codec. */
export type EncodeInput<C> = C extends StructCodec<unknown, infer E, never> ? Partial<E> : never;
/** The `arg` input of a codec. */
export type ArgInput<C> = C extends StructCodec<unknown, never, infer A> ? Partial<A> : never;

interface Slot {
  readonly name: string;
  readonly offset: number;
  readonly type: FieldImpl;
  readonly isPad: boolean;
}

interface PtrPlan {
  readonly index: number;
  readonly name: string;
  readonly opts: PtrOptions<AnyStructCodec | undefined>;
  readonly lenIndex: number; // -1 if none
  readonly selIndex: number; // -1 if none
}

/** The internal side of a codec (same object). */
interface CodecImpl {
  readonly name: string;
  readonly size: number;
  readonly align: number;
  readonly pointers: readonly FieldInfo[];
  readonly hasNestedPointers: boolean;
  prepareObject(v: unknown, path: string, mode: Mode): unknown[];
  writePrepared(dv: DataView, u8: Uint8Array, at: number, p: unknown[]): void;
  readAt(dv: DataView, u8: Uint8Array, at: number): unknown;
  collectFixups(p: unknown[], base: number, out: Fixup[]): void;
}

const IMPL = Symbol('kvm-sev.codec');

function codecImpl(c: unknown): CodecImpl {
  const i = (c as { [IMPL]?: CodecImpl } | null)?.[IMPL];
  if (!i) throw invalidArgType('codec', 'a struct codec from defineStruct()', c);
  return i;
}

/** True if `x` is a codec made by {@link defineStruct}. */
export function isStructCodec(x: unknown): x is AnyStructCodec {
  return typeof x === 'object' && x !== null && IMPL in x;
}

function dataView(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** `b` is a Uint8Array with `size` bytes from offset `at` (what decode() and encode(into) read or write). */
function checkBufferAt(name: string, b: unknown, at: unknown, size: number): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array)) throw invalidArgType(name, 'an instance of Uint8Array', b);
  if (typeof at !== 'number') throw invalidArgType('at', 'number', at);
  if (!Number.isSafeInteger(at) || at < 0) throw outOfRange('at', 'an integer >= 0', at);
  if (b.byteLength < at + size) throw outOfRange(`${name}.byteLength`, `>= ${at + size} (at + size)`, b.byteLength);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function isPointerTarget(v: unknown): v is PointerTarget {
  return ArrayBuffer.isView(v) || v instanceof ArrayBuffer || isMappingRange(v) || isIoctlStruct(v);
}

/**
 * Declare a struct codec from its C field list (see the module comment).
 *
 * ```ts
 * import { defineStruct, pad, ptr, u32 } from 'kvm-sev/uapi';
 * const launch_measure = defineStruct(
 *   'kvm_sev_launch_measure',
 *   [['uaddr', ptr({ len: 'len' })], ['len', u32], ['pad0', pad(4)]],
 *   { size: 16 },
 * );
 * console.log(launch_measure.offsetOf('len'), launch_measure.decode(new Uint8Array(16))); // 8 { uaddr: 0n, len: 0 }
 * ```
 */
export function defineStruct<const Fs extends readonly FieldSpec[]>(
  name: string,
  fields: Fs,
  opts: StructOptions = {},
): StructCodec<DecodedOf<Fs>, EncodeOf<Fs>, ArgOf<Fs>> {
  if (typeof name !== 'string' || name === '') throw invalidArgType('name', 'string', name);
  if (!Array.isArray(fields)) throw invalidArgType('fields', 'an instance of Array', fields);
  const packed = opts.packed === true;

  // Layout.
  const slots: Slot[] = [];
  const seen = new Set<string>();
  let off = 0;
  let align = 1;
  for (const spec of fields) {
    const [fname, ftype] = spec as readonly [unknown, AnyFieldType];
    if (typeof fname !== 'string' || fname === '') throw invalidArgType(`${name}.fields[].name`, 'string', fname);
    if (seen.has(fname)) throw invalidArgValue(`${name}.${fname}`, fname, 'is declared twice');
    seen.add(fname);
    const t = impl(ftype);
    if (!t || typeof t.prepare !== 'function') throw invalidArgType(`${name}.${fname}`, 'a field type', ftype);
    const a = packed ? 1 : t.align;
    off = Math.ceil(off / a) * a;
    slots.push({ name: fname, offset: off, type: t, isPad: t.kind === 'pad' });
    off += t.size;
    align = Math.max(align, a);
  }
  if (opts.align !== undefined) {
    checkCount('opts.align', opts.align, 1);
    align = opts.align;
  }
  const size = Math.ceil(off / align) * align;
  if (opts.size !== undefined && opts.size !== size) {
    throw new Error(`defineStruct(${name}): computed size ${size} differs from the declared ${opts.size}`);
  }

  const indexByName = new Map<string, number>();
  slots.forEach((s, i) => indexByName.set(s.name, i));
  const valueSlots = slots.filter((s) => !s.isPad);
  const valueIndex = new Map<string, number>();
  for (const s of valueSlots) valueIndex.set(s.name, indexByName.get(s.name)!);

  const ref = (what: string, fname: string | undefined, ptrName: string, intOnly: boolean): FieldRef | undefined => {
    if (fname === undefined) return undefined;
    const i = indexByName.get(fname);
    const s = i === undefined ? undefined : slots[i]!;
    if (!s || s.isPad) throw invalidArgValue(`${name}.${ptrName}.${what}`, fname, 'does not name a field of the struct');
    if (intOnly && !['u8', 'u16', 'u32', 'u64'].includes(s.type.kind)) {
      throw invalidArgValue(`${name}.${ptrName}.${what}`, fname, 'must name an unsigned integer field');
    }
    return Object.freeze({ name: s.name, offset: s.offset, size: s.type.size });
  };

  // Pointer plans and public field infos.
  const plans: PtrPlan[] = [];
  const infos: FieldInfo[] = slots.map((s, i) => {
    let pointer: PointerInfo | undefined;
    if (s.type.kind === 'ptr') {
      const o = (s.type as PtrImpl).opts;
      const len = ref('len', o.len, s.name, true);
      if (len && len.size < 4) throw invalidArgValue(`${name}.${s.name}.len`, o.len, 'must name a u32 or u64 field');
      const selectBy = ref('selectBy', o.selectBy, s.name, true);
      const memslot = ref('memslotBitmap', o.memslotBitmap, s.name, true);
      pointer = Object.freeze({
        ...(len ? { len } : {}),
        ...(o.fixedLen !== undefined ? { fixedLen: o.fixedLen } : {}),
        ...(o.lenUnit === 'bits' ? { lenBits: true as const } : {}),
        ...(memslot ? { memslotBitmap: memslot } : {}),
        ...(o.retained ? { retained: true as const } : {}),
        ...(selectBy ? { selectBy } : {}),
        ...(o.struct ? { struct: o.struct } : {}),
      });
      plans.push({
        index: i,
        name: s.name,
        opts: o,
        lenIndex: len ? indexByName.get(len.name)! : -1,
        selIndex: selectBy ? indexByName.get(selectBy.name)! : -1,
      });
    }
    return Object.freeze({
      name: s.name,
      offset: s.offset,
      size: s.type.size,
      type: s.type.typeName,
      kind: s.type.kind,
      ...(pointer ? { pointer } : {}),
      ...(s.type.nested ? { nested: s.type.nested } : {}),
    });
  });
  const pointers = infos.filter((f) => f.kind === 'ptr');
  const nested = slots.filter((s) => s.type.fixups !== undefined && s.type.kind !== 'ptr');
  const hasFixups = plans.length > 0 || nested.length > 0;

  function unknownField(path: string, key: string, v: unknown): never {
    throw invalidArgValue(`${path}.${key}`, v, `is not a field of struct ${name}`);
  }

  /** Validate a value object into one prepared entry per slot (undefined = zero). */
  function prepareObject(v: unknown, path: string, mode: Mode): unknown[] {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || isPointerTarget(v)) {
      throw invalidArgType(path, 'object', v);
    }
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj);
    for (let k = 0; k < keys.length; k++) {
      if (!valueIndex.has(keys[k]!)) unknownField(path, keys[k]!, obj[keys[k]!]);
    }
    const p = new Array<unknown>(slots.length);
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]!;
      if (s.isPad) continue;
      p[i] = s.type.prepare(obj[s.name], path, s.name, mode);
    }
    if (mode === 'arg' && plans.length > 0) resolvePointers(obj, p, path);
    return p;
  }

  /** arg mode: encode plain-object pointees, check target sizes, fill paired lengths. */
  function resolvePointers(obj: Record<string, unknown>, p: unknown[], path: string): void {
    const autoLen = new Map<number, number>();
    for (const plan of plans) {
      let target = p[plan.index] as PointerTarget | Record<string, unknown> | undefined;
      const ppath = `${path}.${plan.name}`;
      let codec: AnyStructCodec | null | undefined = plan.opts.struct;
      if (plan.selIndex >= 0) {
        const key = Number(p[plan.selIndex] ?? 0);
        codec = plan.opts.select ? plan.opts.select(key) : undefined;
      }
      if (target === undefined) continue;
      if (!isPointerTarget(target)) {
        if (!isPlainObject(target)) {
          throw invalidArgType(ppath, 'an ArrayBufferView, ArrayBuffer, MappingRange, IoctlStruct or null', target);
        }
        if (!codec) {
          throw invalidArgValue(
            ppath,
            target,
            plan.selIndex >= 0
              ? `cannot be a plain object: no struct is known for ${slots[plan.selIndex]!.name} ${String((p[plan.selIndex] as number | bigint | undefined) ?? 0)}`
              : 'must be a pointer target (a plain object needs a struct pointer)',
          );
        }
        const ci = codecImpl(codec);
        target = argFrom(ci, ci.prepareObject(target, ppath, 'arg'));
        p[plan.index] = target;
      }
      const tlen = targetLength(target);
      if (isMappingRange(target)) {
        if (target.mapping.closed) throw invalidArgValue(ppath, target, 'refers to a closed mapping');
        if (target.offset < 0 || target.length < 0 || target.offset + target.length > target.mapping.size) {
          throw outOfRange(`${ppath}.offset`, `a range inside the mapping (size ${target.mapping.size})`, target.offset);
        }
      } else if (plan.opts.retained) {
        throw invalidArgValue(ppath, target, 'must be a MappingRange of guest memory: the kernel keeps this address after the call');
      }
      if (codec && tlen < codec.size) {
        throw outOfRange(`${ppath}`, `a target of at least ${codec.size} bytes (struct ${codec.name})`, tlen);
      }
      if (plan.opts.fixedLen !== undefined && tlen < plan.opts.fixedLen) {
        throw outOfRange(`${ppath}`, `a target of at least ${plan.opts.fixedLen} bytes`, tlen);
      }
      if (plan.lenIndex >= 0 && plan.opts.lenUnit === 'bits') {
        const lenSlot = slots[plan.lenIndex]!;
        const bits = BigInt((p[plan.lenIndex] as number | bigint | undefined) ?? 0);
        const need = ((bits + 63n) / 64n) * 8n;
        if (need > BigInt(tlen)) {
          throw outOfRange(`${path}.${lenSlot.name}`, `<= ${tlen * 8} (bits; the ${plan.name} target holds ${tlen} bytes)`, bits);
        }
      } else if (plan.lenIndex >= 0) {
        const lenSlot = slots[plan.lenIndex]!;
        const given = p[plan.lenIndex] as number | bigint | undefined;
        if (obj[lenSlot.name] === undefined) {
          const prev = autoLen.get(plan.lenIndex);
          autoLen.set(plan.lenIndex, prev === undefined ? tlen : Math.min(prev, tlen));
        } else if (given !== undefined && BigInt(given) > BigInt(tlen)) {
          throw outOfRange(`${path}.${lenSlot.name}`, `<= ${tlen} (the length of the ${plan.name} target)`, given);
        }
      }
    }
    for (const [i, len] of autoLen) {
      const s = slots[i]!;
      const max = s.type.size >= 8 ? Number.MAX_SAFE_INTEGER : 2 ** (8 * s.type.size) - 1;
      if (len > max) throw outOfRange(`${path}.${s.name}`, `<= ${max} (taken from the pointer target's length)`, len);
      p[i] = len;
    }
  }

  function writePrepared(dv: DataView, u8a: Uint8Array, at: number, p: unknown[]): void {
    for (let i = 0; i < slots.length; i++) {
      const v = p[i];
      if (v !== undefined) slots[i]!.type.write(dv, u8a, at + slots[i]!.offset, v);
    }
  }

  // Every decoded value starts as a copy of this (all fields, in order): the copy has its final
  // shape at once, where adding the fields one by one walked a chain of map transitions per value.
  const template: Record<string, unknown> = {};
  for (const s of valueSlots) template[s.name] = undefined;

  function readAt(dv: DataView, u8a: Uint8Array, at: number): unknown {
    const out: Record<string, unknown> = { ...template };
    for (let i = 0; i < valueSlots.length; i++) {
      const s = valueSlots[i]!;
      out[s.name] = s.type.read(dv, u8a, at + s.offset);
    }
    return out;
  }

  function collectFixups(p: unknown[], base: number, out: Fixup[]): void {
    if (!hasFixups) return;
    for (let i = 0; i < slots.length; i++) {
      const s = slots[i]!;
      if (s.type.fixups && p[i] !== undefined) s.type.fixups(p[i], base + s.offset, out);
    }
  }

  function argFrom(ci: CodecImpl, p: unknown[]): IoctlStruct {
    const b = new Uint8Array(ci.size);
    ci.writePrepared(dataView(b), b, 0, p);
    const fixups: Fixup[] = [];
    ci.collectFixups(p, 0, fixups);
    return ioctlStruct(b, fixups);
  }

  const inner: CodecImpl = {
    name,
    size,
    align,
    pointers,
    hasNestedPointers: nested.length > 0,
    prepareObject,
    writePrepared,
    readAt,
    collectFixups,
  };

  const fieldOf = (fname: string): FieldInfo => {
    const i = typeof fname === 'string' ? indexByName.get(fname) : undefined;
    if (i === undefined) throw invalidArgValue('field', fname, `is not a field of struct ${name}`);
    return infos[i]!;
  };

  const codec = {
    name,
    size,
    align,
    packed,
    fields: Object.freeze(infos),
    pointers: Object.freeze(pointers),
    offsetOf(fname: string): number {
      return fieldOf(fname).offset;
    },
    field: fieldOf,
    encode(value: unknown, into?: Uint8Array, at = 0): Uint8Array {
      const p = prepareObject(value, name, 'encode');
      let out: Uint8Array;
      if (into === undefined) {
        out = new Uint8Array(size);
        at = 0;
      } else {
        checkBufferAt('into', into, at, size);
        out = into;
        out.fill(0, at, at + size);
      }
      writePrepared(dataView(out), out, at, p);
      return out;
    },
    decode(b: Uint8Array, at = 0): unknown {
      checkBufferAt('bytes', b, at, size);
      return readAt(dataView(b), b, at);
    },
    arg(value: unknown): IoctlStruct {
      return argFrom(inner, prepareObject(value, name, 'arg'));
    },
  } as unknown as StructCodec<DecodedOf<Fs>, EncodeOf<Fs>, ArgOf<Fs>>;
  Object.defineProperty(codec, IMPL, { value: inner, enumerable: false });
  Object.defineProperty(codec, 'type', { value: struct(codec), enumerable: false });
  return Object.freeze(codec);
}

// ------------------------------------------------------------------------------------------------
// Arrays of structs and variable-length structs

/** Encode `values` back to back (C array stride = `codec.size`). All values are validated first. */
export function encodeArray<T, E, A>(codec: StructCodec<T, E, A>, values: readonly Partial<E>[]): Uint8Array {
  const c = codecImpl(codec);
  if (!Array.isArray(values)) throw invalidArgType('values', 'an instance of Array', values);
  const prepared = values.map((v, i) => c.prepareObject(v, `${c.name}[${i}]`, 'encode'));
  const out = new Uint8Array(c.size * values.length);
  const dv = dataView(out);
  prepared.forEach((p, i) => c.writePrepared(dv, out, i * c.size, p));
  return out;
}

/** Decode `count` structs starting at `at` (default: as many as fit). */
export function decodeArray<T, E, A>(codec: StructCodec<T, E, A>, b: Uint8Array, at = 0, count?: number): T[] {
  const c = codecImpl(codec);
  checkBufferAt('bytes', b, at, 0);
  const n = count ?? Math.floor((b.byteLength - at) / c.size);
  checkCount('count', n, 0);
  checkBufferAt('bytes', b, at, n * c.size);
  const dv = dataView(b);
  const out = new Array<T>(n);
  for (let i = 0; i < n; i++) out[i] = c.readAt(dv, b, at + i * c.size) as T;
  return out;
}

/**
 * Shape of a variable-length struct (`kvm_msrs`, `kvm_cpuid2`, `kvm_msr_list`): a fixed header with an
 * element count, followed by `count` elements. The ioctl number encodes only `headerSize`.
 */
export interface VariableLayout {
  /** Offset of the element count in the header. */
  readonly countOffset: number;
  /** Size of the count field (4). */
  readonly countSize: number;
  /** `sizeof` the header (= where the elements start). */
  readonly headerSize: number;
  /** Size of one element. */
  readonly elementSize: number;
}

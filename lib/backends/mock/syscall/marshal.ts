/**
 * The native boundary, in TypeScript: validates an ioctl argument exactly as native/marshal.cc and
 * native/ioctl.cc do (same checks, same order, same error classes and codes), places every struct
 * level and JS buffer in per-call user memory (user-memory.ts) with the pointer fields filled in,
 * and afterwards copies the kernel's answer back: each struct without its pointer fields (they stay
 * 0 in JS), each buffer whole. Guest-memory targets are used in place.
 */
import { KvmSevError } from '../../../backend/errors.js';
import type { AnyStructCodec, FieldInfo } from '../../../uapi/codec.js';
import type { IoctlDef } from '../../../uapi/ioctls.js';
import { isAnyMapping, unmappedTarget, type BounceSet, type UserMemory } from '../kernel/common/user-memory.js';
import { MockMapping } from '../kernel/common/mapping.js';

type Selector = (key: number) => AnyStructCodec | null | undefined;

interface PtrSpec {
  readonly name: string;
  readonly offset: number;
  readonly lenOffset: number;
  readonly lenSize: number;
  readonly fixedLen: number;
  readonly retained: boolean;
  readonly selectorOffset: number;
  readonly nested?: AnyStructCodec;
  readonly lenBits: boolean;
  readonly slotOffset: number;
}

function coded<E extends Error>(e: E, code: string): E {
  Object.defineProperty(e, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return e;
}
export const typeErr = (msg: string): TypeError => coded(new TypeError(msg), 'ERR_INVALID_ARG_TYPE');
export const valueErr = (msg: string): TypeError => coded(new TypeError(msg), 'ERR_INVALID_ARG_VALUE');
export const rangeErr = (msg: string): RangeError => coded(new RangeError(msg), 'ERR_OUT_OF_RANGE');

/** ArgU32 of the native shim. */
export function argU32(v: unknown, name: string): number {
  if (typeof v !== 'number') throw typeErr(`The "${name}" argument must be of type number`);
  if (!(v >= 0 && v <= 4294967295) || !Number.isInteger(v)) {
    throw rangeErr(`The value of "${name}" is out of range. It must be an integer >= 0 and <= 4294967295`);
  }
  return v;
}

/** ArgSize of the native shim: a non-negative safe integer or a u64 BigInt. */
export function argSize(v: unknown, name: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw rangeErr(`The value of "${name}" is out of range of u64`);
    return v;
  }
  if (typeof v !== 'number') throw typeErr(`The "${name}" argument must be of type number or bigint`);
  if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER) || !Number.isInteger(v)) {
    throw rangeErr(`The value of "${name}" is out of range. It must be a safe integer >= 0`);
  }
  return BigInt(v);
}

/** Every pointer of a struct, those of nested structs and arrays of structs too (kvm_msr_filter.ranges[i].bitmap), flattened. */
export function flatPointers(
  codec: AnyStructCodec,
  base = 0,
  prefix = '',
): { name: string; offset: number; info: FieldInfo; baseOffset: number }[] {
  const out: { name: string; offset: number; info: FieldInfo; baseOffset: number }[] = [];
  for (const f of codec.fields) {
    if (f.kind === 'ptr') out.push({ name: prefix + f.name, offset: base + f.offset, info: f, baseOffset: base });
    else if (f.nested) {
      for (let i = 0; i < f.nested.count; i++) {
        const name = f.kind === 'array' ? `${prefix}${f.name}[${i}].` : `${prefix}${f.name}.`;
        out.push(...flatPointers(f.nested.codec, base + f.offset + i * f.nested.codec.size, name));
      }
    }
  }
  return out;
}

function ptrSpecs(codec: AnyStructCodec): PtrSpec[] {
  return flatPointers(codec).map(({ name, offset, info: f, baseOffset }) => ({
    name,
    offset,
    lenOffset: f.pointer?.len ? baseOffset + f.pointer.len.offset : -1,
    lenSize: f.pointer?.len?.size ?? 0,
    fixedLen: f.pointer?.fixedLen ?? 0,
    retained: f.pointer?.retained === true,
    selectorOffset: f.pointer?.selectBy ? baseOffset + f.pointer.selectBy.offset : -1,
    ...(f.pointer?.struct ? { nested: f.pointer.struct } : {}),
    lenBits: f.pointer?.lenBits === true,
    slotOffset: f.pointer?.memslotBitmap ? baseOffset + f.pointer.memslotBitmap.offset : -1,
  }));
}

/** JS memory a target names, as native GetBytes sees it. */
function getBytes(v: unknown): Uint8Array | undefined {
  // A detached buffer has no memory: length 0 (refused by the caller).
  if (ArrayBuffer.isView(v)) return v.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return v.byteLength === 0 ? new Uint8Array(0) : new Uint8Array(v);
  return undefined;
}

interface Level {
  readonly ptrs: readonly PtrSpec[];
  readonly js: Uint8Array;
  readonly len: number;
  readonly store: Uint8Array;
  readonly addr: bigint;
}

interface Bounce {
  readonly target: unknown;
  readonly len: number;
  readonly store: Uint8Array;
}

/** One call's marshalled argument. */
export class Marshalled {
  /** The root struct's user address (0n for a NULL argument). */
  rootAddr = 0n;
  /** Decoded-struct lookups for the trace: user address → codec. */
  readonly structs: { addr: bigint; codec: AnyStructCodec; bytes: Uint8Array }[] = [];
  private readonly levels: Level[] = [];
  private readonly bounces: Bounce[] = [];
  private readonly held: MockMapping[] = [];
  /** This call's bounce regions in user memory (they live until the call ends). */
  private readonly bounceSet: BounceSet = { regions: [] };
  private readonly mem: UserMemory;
  private readonly selectors: ReadonlyMap<string, Selector>;
  private readonly what: string;
  private readonly slotBytes: ((slot: number) => bigint | undefined) | undefined;

  /** `slotBytes`: the sizes of the memory slots of the VM the call goes to (dirty bitmaps are sized by them). */
  constructor(mem: UserMemory, selectors: ReadonlyMap<string, Selector>, what: string, slotBytes?: (slot: number) => bigint | undefined) {
    this.mem = mem;
    this.selectors = selectors;
    this.what = what;
    this.slotBytes = slotBytes;
  }

  /** KernelBytes of native/marshal.cc: what the kernel accesses beyond a plain paired length (0n: no rule). */
  private kernelBytes(pf: PtrSpec, store: Uint8Array, paired: bigint, field: string): bigint {
    if (pf.lenBits) return ((paired + 63n) / 64n) * 8n;
    if (pf.slotOffset < 0) return 0n;
    const slot = new DataView(store.buffer, store.byteOffset, store.byteLength).getUint32(pf.slotOffset, true);
    const bytes = this.slotBytes?.(slot);
    if (bytes === undefined)
      throw valueErr(
        `${field}: memory slot ${slot} was not set by this process, so the shim cannot size its dirty bitmap (one bit per page)`,
      );
    return ((bytes / 4096n + 63n) / 64n) * 8n;
  }

  /** Build the root struct (BuildRoot). */
  buildRoot(arg: unknown, codec: AnyStructCodec, variable?: IoctlDef['variable']): void {
    this.rootAddr = this.buildLevel(arg, codec, variable);
  }

  private buildLevel(arg: unknown, codec: AnyStructCodec, variable?: IoctlDef['variable']): bigint {
    const w = this.what;
    const notStruct = `${w}: the argument must be an IoctlStruct ({kind:'struct', bytes, fixups})`;
    if (typeof arg !== 'object' || arg === null) throw typeErr(notStruct);
    const o = arg as { kind?: unknown; bytes?: unknown; fixups?: unknown };
    if (o.kind !== 'struct') throw typeErr(notStruct);
    const bytes = o.bytes;
    if (!(bytes instanceof Uint8Array) || Object.prototype.toString.call(bytes) !== '[object Uint8Array]') {
      throw typeErr(`${w}: "bytes" must be a Uint8Array`);
    }
    const len = bytes.byteLength;
    let need = codec.size;
    if (variable) {
      if (len < variable.headerSize) throw rangeErr(`${w}: ${codec.name} is shorter than its header`);
      const count = new DataView(bytes.buffer, bytes.byteOffset, len).getUint32(variable.countOffset, true);
      need = variable.headerSize + count * variable.elementSize;
      if (count > 1 << 20) throw rangeErr(`${w}: ${codec.name} count ${count} is too large`);
    }
    if (len < need) throw rangeErr(`${w}: ${codec.name} needs ${need} bytes, got ${len}`);

    const { addr, store } = this.mem.addBounce(bytes.subarray(0, need), this.bounceSet, bytes.byteOffset);
    const ptrs = ptrSpecs(codec);
    const dv = new DataView(store.buffer, store.byteOffset, store.byteLength);
    for (const pf of ptrs) {
      if (dv.getBigUint64(pf.offset, true) !== 0n) {
        throw valueErr(`${w}: pointer field ${codec.name}.${pf.name} must be 0 in bytes; pass the memory it points at as a fix-up`);
      }
    }
    this.levels.push({ ptrs, js: bytes, len: need, store, addr });
    this.structs.push({ addr, codec, bytes: store.subarray(0, need) });

    const fixups = o.fixups;
    const seen = new Set<number>();
    // As the native shim: a memory slot's userspace_addr may not be NULL with a size (the guest would see this process's memory).
    const checkRetained = () => {
      if (codec.name !== 'kvm_userspace_memory_region' && codec.name !== 'kvm_userspace_memory_region2') return;
      for (const [k, pf] of ptrs.entries()) {
        if (!pf.retained || seen.has(k) || pf.lenOffset < 0) continue;
        const len = pf.lenSize === 4 ? BigInt(dv.getUint32(pf.lenOffset, true)) : dv.getBigUint64(pf.lenOffset, true);
        if (len !== 0n)
          throw valueErr(
            `${w}: ${codec.name}.${pf.name} is NULL but its length is not 0: the kernel keeps this address, so it must point into guest memory (a mapping)`,
          );
      }
    };
    if (fixups === undefined || fixups === null) {
      checkRetained();
      return addr;
    }
    if (!Array.isArray(fixups)) throw typeErr(`${w}: "fixups" must be an array`);
    for (const fv of fixups as unknown[]) {
      if (typeof fv !== 'object' || fv === null) throw typeErr(`${w}: each fix-up must be an object {offset, target}`);
      const f = fv as { offset?: unknown; target?: unknown };
      const off = argU32(f.offset, 'fixup.offset');
      const idx = ptrs.findIndex((p) => p.offset === off);
      if (idx < 0) throw valueErr(`${w}: offset ${off} of ${codec.name} is not a pointer field`);
      if (seen.has(idx)) throw valueErr(`${w}: two fix-ups for ${codec.name}.${ptrs[idx]!.name}`);
      seen.add(idx);
      const pf = ptrs[idx]!;
      let paired = 0n;
      if (pf.lenOffset >= 0) paired = pf.lenSize === 4 ? BigInt(dv.getUint32(pf.lenOffset, true)) : dv.getBigUint64(pf.lenOffset, true);
      const target = this.resolveTarget(f.target, pf, codec, store, paired);
      dv.setBigUint64(pf.offset, target, true);
    }
    checkRetained();
    return addr;
  }

  private resolveTarget(target: unknown, pf: PtrSpec, codec: AnyStructCodec, store: Uint8Array, paired: bigint): bigint {
    const field = `${this.what}: ${codec.name}.${pf.name}`;
    const select = this.selectors.get(codec.name);
    if (pf.selectorOffset >= 0 || pf.nested) {
      let nested = pf.nested ?? null;
      if (pf.selectorOffset >= 0) {
        const sel = new DataView(store.buffer, store.byteOffset).getUint32(pf.selectorOffset, true);
        nested = select?.(sel) ?? null;
        // A command that takes no data (or an id the kernel does not know): the kernel ignores the
        // pointer or refuses the id (EINVAL), so the memory given is passed as it is.
        if (!nested) return this.opaqueTarget(target, field);
      }
      return this.buildLevel(target, nested!);
    }
    return this.memoryTarget(target, pf, field, paired, store);
  }

  /**
   * The data pointer of a command without a struct: bytes (an IoctlStruct without fix-ups, a Buffer,
   * an ArrayBuffer) are placed in user memory, a guest-memory range is used in place. Fix-ups cannot
   * be placed: no pointer field is known in memory without a layout.
   */
  private opaqueTarget(target: unknown, field: string): bigint {
    const o = target as { kind?: unknown; bytes?: unknown; fixups?: unknown } | null;
    if (typeof o === 'object' && o !== null && o.kind === 'struct') {
      if (!(o.bytes instanceof Uint8Array)) throw typeErr(`${this.what}: "bytes" must be a Uint8Array`);
      if (o.fixups !== undefined && o.fixups !== null && (!Array.isArray(o.fixups) || o.fixups.length > 0)) {
        throw valueErr(`${field}: the command has no data struct here, so its memory has no pointer fields to fix up`);
      }
      target = o.bytes;
    }
    const none: PtrSpec = {
      name: 'data',
      offset: 0,
      lenOffset: -1,
      lenSize: 0,
      fixedLen: 0,
      retained: false,
      selectorOffset: -1,
      lenBits: false,
      slotOffset: -1,
    };
    return this.memoryTarget(target, none, field, 0n, new Uint8Array(0));
  }

  /** A pointer at memory: a guest-memory range in place, or JS bytes copied to a bounce region. */
  private memoryTarget(target: unknown, pf: PtrSpec, field: string, paired: bigint, store: Uint8Array): bigint {
    const isBytes = ArrayBuffer.isView(target) || target instanceof ArrayBuffer;
    if (typeof target === 'object' && target !== null && !isBytes) {
      const t = target as { kind?: unknown; mapping?: unknown; offset?: unknown; length?: unknown };
      if (t.kind !== 'mapping') throw typeErr(`${field}: the target must be a Buffer, an ArrayBuffer or a guest-memory range`);
      if (!isAnyMapping(t.mapping)) throw typeErr('The "target.mapping" argument must be a native Mapping');
      const m = t.mapping;
      const off = argSize(t.offset, 'target.offset');
      const len = argSize(t.length, 'target.length');
      if (m.closed) throw unmappedTarget(field);
      const size = BigInt(m.size);
      if (off > size || len > size - off) {
        throw rangeErr(`${field}: range [${off}, +${len}) is outside the mapping of ${m.size} bytes`);
      }
      const kb = this.kernelBytes(pf, store, paired, field);
      if (kb > len) throw rangeErr(`${field}: the kernel accesses ${kb} bytes here, the target has ${len}`);
      if (pf.lenOffset >= 0 && !pf.lenBits && paired > len)
        throw rangeErr(`${field}: the paired length ${paired} exceeds the target's ${len} bytes`);
      if (BigInt(pf.fixedLen) > len) throw rangeErr(`${field}: the target must hold ${pf.fixedLen} bytes`);
      if (m instanceof MockMapping) {
        m.inflight++;
        this.held.push(m);
      }
      return this.mem.addressOf(m) + off;
    }
    if (pf.retained) {
      throw typeErr(
        `${field}: the kernel keeps this address after the call, so it must point into guest memory (a mapping), not a JS buffer`,
      );
    }
    const data = getBytes(target);
    if (!data) throw typeErr(`${field}: the target must be a Buffer, an ArrayBuffer or a guest-memory range`);
    const len = data.byteLength;
    const kb = this.kernelBytes(pf, store, paired, field);
    if (kb > BigInt(len)) throw rangeErr(`${field}: the kernel accesses ${kb} bytes here, the buffer has ${len}`);
    if (pf.lenOffset >= 0 && !pf.lenBits && paired > BigInt(len))
      throw rangeErr(`${field}: the paired length ${paired} exceeds the buffer's ${len} bytes`);
    if (pf.fixedLen > len) throw rangeErr(`${field}: the buffer must hold ${pf.fixedLen} bytes`);
    if (len === 0) throw rangeErr(`${field}: the buffer is empty or detached; pass null for a NULL pointer`);
    const { addr, store: b } = this.mem.addBounce(data, this.bounceSet, data.byteOffset);
    this.bounces.push({ target, len, store: b });
    return addr;
  }

  /** The u32 at `offset` of the root struct as the kernel sees it. */
  readRootU32(offset: number): number {
    const s = this.levels[0]!.store;
    return new DataView(s.buffer, s.byteOffset, s.byteLength).getUint32(offset, true);
  }
  /** What the kernel writes into the root struct after the call proper (KVM_CREATE_DEVICE's fd). */
  writeRootU32(offset: number, v: number): void {
    const s = this.levels[0]!.store;
    new DataView(s.buffer, s.byteOffset, s.byteLength).setUint32(offset, v, true);
  }

  /** CopyBack: every struct level without its pointer fields, every buffer whole. */
  copyBack(): void {
    for (const L of this.levels) {
      const js = L.js;
      if (js.byteLength < L.len) continue; // detached meanwhile
      let pos = 0;
      for (const pf of [...L.ptrs].sort((a, b) => a.offset - b.offset)) {
        if (pf.offset > pos) js.set(L.store.subarray(pos, pf.offset), pos);
        pos = pf.offset + 8;
      }
      if (L.len > pos) js.set(L.store.subarray(pos, L.len), pos);
    }
    for (const b of this.bounces) {
      const d = getBytes(b.target);
      if (!d || d.byteLength !== b.len) continue;
      d.set(b.store.subarray(0, b.len));
    }
  }

  /** The call is over: its mappings may be unmapped again, its bounce regions go. */
  release(): void {
    for (const m of this.held) m.inflight--;
    this.held.length = 0;
    this.mem.endCall(this.bounceSet);
  }
}

/** Thrown where the native shim throws a coded error of its own. */
export function codedError(code: string, message: string): KvmSevError {
  return new KvmSevError(code, message);
}

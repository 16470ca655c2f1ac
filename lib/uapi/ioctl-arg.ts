/**
 * How an ioctl argument travels from JS to a backend.
 *
 * JS never writes a user-space address: a struct's pointer fields stay zero in `bytes`, and each
 * non-NULL pointer is described by a {@link Fixup} that names the memory it points at. The backend
 * (native: the C++ shim; mock: the mock kernel) resolves every fix-up itself, checks the paired
 * length field against the target's size, and keeps the target alive until the call ends.
 */

/**
 * A backend-owned memory mapping (guest memory). Only the backend that created it can resolve it;
 * JS sees it as an opaque handle with a size.
 */
export interface MappingHandle {
  /** Size of the mapping in bytes. */
  readonly size: number;
  /** True once `unmap()` ran; a closed mapping can no longer be a pointer target. */
  readonly closed: boolean;
}

/** A byte range of a {@link MappingHandle}: what guest-memory pointers (uaddr, userspace_addr) point at. */
export interface MappingRange {
  readonly kind: 'mapping';
  readonly mapping: MappingHandle;
  /** Byte offset into the mapping. */
  readonly offset: number;
  /** Length of the range in bytes. */
  readonly length: number;
}

/** A struct passed by pointer, itself possibly holding pointers (e.g. `kvm_sev_cmd.data`). */
export interface IoctlStruct {
  readonly kind: 'struct';
  /** The struct's bytes, exactly as the kernel lays them out. Written back after the call. */
  readonly bytes: Uint8Array;
  /** One entry per non-NULL pointer field of `bytes`. */
  readonly fixups: readonly Fixup[];
}

/** Memory a pointer field may point at. */
export type PointerTarget = ArrayBufferView | ArrayBuffer | MappingRange | IoctlStruct;

/** "The 8-byte pointer field at `offset` points at `target`." */
export interface Fixup {
  readonly offset: number;
  readonly target: PointerTarget;
}

/**
 * An ioctl's third argument: `undefined` (0), an integer passed by value (KVM_CREATE_VM's type,
 * KVM_CHECK_EXTENSION's cap), or a pointer to a struct.
 */
export type IoctlArg = undefined | number | IoctlStruct;

export function isIoctlStruct(x: unknown): x is IoctlStruct {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'struct';
}

export function isMappingRange(x: unknown): x is MappingRange {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'mapping';
}

/** Build an {@link IoctlStruct}. */
export function ioctlStruct(bytes: Uint8Array, fixups: readonly Fixup[] = []): IoctlStruct {
  return { kind: 'struct', bytes, fixups };
}

/** A range of guest memory as a pointer target. */
export function mappingRange(mapping: MappingHandle, offset = 0, length = mapping.size - offset): MappingRange {
  return { kind: 'mapping', mapping, offset, length };
}

/** The byte length of a pointer target (what a paired length field is checked against). */
export function targetLength(t: PointerTarget): number {
  if (isIoctlStruct(t)) return t.bytes.byteLength;
  if (isMappingRange(t)) return t.length;
  return t.byteLength;
}

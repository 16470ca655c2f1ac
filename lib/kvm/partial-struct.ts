/**
 * Partial register updates. The KVM_SET_* ioctls take a whole struct, and a codec encodes a missing
 * field as zero, so `setRegs({ rip })` alone would zero every other register. The vCPU setters
 * instead read the current struct (KVM_GET_*), lay the named fields over it and write it back;
 * a value that names every field is written as is, with no read.
 */

/** The shape of a struct: its decoding of zero bytes (every field, nested structs and arrays included). */
const shapes = new WeakMap<object, unknown>();

interface Decodes {
  readonly size: number;
  decode(b: Uint8Array): unknown;
}

function shapeOf(codec: Decodes): unknown {
  let s = shapes.get(codec);
  if (s === undefined) {
    s = codec.decode(new Uint8Array(codec.size));
    shapes.set(codec, s);
  }
  return s;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function complete(shape: unknown, v: unknown): boolean {
  if (v === undefined) return false;
  if (Array.isArray(shape)) return Array.isArray(v) && v.length >= shape.length && shape.every((s, i) => complete(s, v[i]));
  if (isRecord(shape)) return isRecord(v) && Object.keys(shape).every((k) => complete(shape[k], v[k]));
  return true;
}

/** True if `value` names every field of the codec's struct (so writing it loses nothing). */
export function namesEveryField(codec: Decodes, value: unknown): boolean {
  return complete(shapeOf(codec), value);
}

/**
 * `current` with the fields `partial` names laid over it: nested structs field by field, arrays
 * element by element (a shorter array changes only its first elements); byte strings and numbers
 * are replaced whole.
 */
export function overlay(current: unknown, partial: unknown): unknown {
  if (partial === undefined) return current;
  if (Array.isArray(current) && Array.isArray(partial)) {
    return current.map((c: unknown, i) => (i < partial.length ? overlay(c, partial[i]) : c));
  }
  if (isRecord(current) && isRecord(partial)) {
    const out: Record<string, unknown> = { ...current };
    for (const [k, v] of Object.entries(partial)) out[k] = overlay(current[k], v);
    return out;
  }
  return partial;
}

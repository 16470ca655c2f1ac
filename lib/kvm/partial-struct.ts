/**
 * Partial register updates. The KVM_SET_* ioctls take a whole struct, and a codec encodes a missing
 * field as zero, so `setRegs({ rip })` alone would zero every other register. The vCPU setters
 * instead read the current struct (KVM_GET_*), lay the named fields over it and write it back;
 * a value that names every field is written as is, with no read.
 */

/**
 * The shape of a struct, from its decoding of zero bytes (every field, nested structs and arrays
 * included), as a plan the completeness check walks with plain loops: a record's keys and an
 * array's length are read once per codec, not per call (Object.keys and every() over a kvm_sregs
 * cost more than its encoding).
 */
type Plan =
  | null
  | { readonly keys: readonly string[]; readonly items: readonly Plan[] }
  | { readonly length: number; readonly items: readonly Plan[] };

const plans = new WeakMap<object, Plan>();

interface Decodes {
  readonly size: number;
  decode(b: Uint8Array): unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

function planOf(shape: unknown): Plan {
  if (Array.isArray(shape)) return { length: shape.length, items: shape.map(planOf) };
  if (isRecord(shape)) {
    const keys = Object.keys(shape);
    return { keys, items: keys.map((k) => planOf(shape[k])) };
  }
  return null; // a number, bigint or byte string: any value counts
}

function codecPlan(codec: Decodes): Plan {
  let p = plans.get(codec);
  if (p === undefined) {
    p = planOf(codec.decode(new Uint8Array(codec.size)));
    plans.set(codec, p);
  }
  return p;
}

function complete(plan: Plan, v: unknown): boolean {
  if (v === undefined) return false;
  if (plan === null) return true;
  if ('length' in plan) {
    if (!Array.isArray(v) || v.length < plan.length) return false;
    for (let i = 0; i < plan.length; i++) if (!complete(plan.items[i]!, v[i])) return false;
    return true;
  }
  if (!isRecord(v)) return false;
  for (let i = 0; i < plan.keys.length; i++) if (!complete(plan.items[i]!, v[plan.keys[i]!])) return false;
  return true;
}

/** True if `value` names every field of the codec's struct (so writing it loses nothing). */
export function namesEveryField(codec: Decodes, value: unknown): boolean {
  return complete(codecPlan(codec), value);
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

/** {@link Backend.ioctlBatch} as one `ioctl()` per call: what the mock and the hybrid run. */
import { invalidArgType } from '../uapi/errors.js';
import type { Backend, IoctlCall } from './contract.js';

/** Marks an error with the position of the call that raised it (see Backend.ioctlBatch). */
export function atIndex(e: unknown, index: number): unknown {
  if (e !== null && typeof e === 'object') (e as { index?: number }).index = index;
  return e;
}

/** The calls, checked to be an array of objects (a TypeError with `index` otherwise). */
export function checkCalls(calls: unknown): readonly IoctlCall[] {
  if (!Array.isArray(calls)) throw invalidArgType('calls', 'an array', calls);
  calls.forEach((c: unknown, i) => {
    if (c === null || typeof c !== 'object') throw atIndex(invalidArgType(`calls[${i}]`, 'an object', c), i);
  });
  return calls as readonly IoctlCall[];
}

export function ioctlEach(backend: Pick<Backend, 'ioctl'>, calls: readonly IoctlCall[]): number[] {
  const checked = checkCalls(calls);
  const out: number[] = [];
  for (let i = 0; i < checked.length; i++) {
    const c = checked[i]!;
    try {
      out.push(backend.ioctl(c.fd, c.request, c.arg));
    } catch (e) {
      throw atIndex(e, i);
    }
  }
  return out;
}

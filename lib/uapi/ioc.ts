/**
 * ioctl request encoding for x86_64 (`<asm-generic/ioctl.h>`): nr bits 0-7, type bits 8-15,
 * size bits 16-29, direction bits 30-31.
 *
 * Every result is an unsigned 32-bit Number (`>>> 0`): `_IOR`/`_IOWR` requests are >= 0x80000000 and
 * must not turn negative, because the native shim and the mock compare them as unsigned.
 */

import { invalidArgType, outOfRange } from './errors.js';

/** `_IOC_NONE`: no data transfer. */
export const _IOC_NONE = 0;
/** `_IOC_WRITE`: userspace writes (the kernel reads the argument). */
export const _IOC_WRITE = 1;
/** `_IOC_READ`: userspace reads (the kernel writes the argument). */
export const _IOC_READ = 2;

export const _IOC_NRBITS = 8;
export const _IOC_TYPEBITS = 8;
export const _IOC_SIZEBITS = 14;
export const _IOC_DIRBITS = 2;
export const _IOC_NRSHIFT = 0;
export const _IOC_TYPESHIFT = 8;
export const _IOC_SIZESHIFT = 16;
export const _IOC_DIRSHIFT = 30;

function checkField(name: string, v: unknown, bits: number): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'number', v);
  const max = 2 ** bits - 1;
  if (!Number.isInteger(v) || v < 0 || v > max) throw outOfRange(name, `an integer >= 0 && <= ${max}`, v);
  return v;
}

/** `_IOC(dir, type, nr, size)`. `type` may be a one-character string (`'S'`), like C's char literal. */
export function _IOC(dir: number, type: number | string, nr: number, size: number): number {
  const t = typeof type === 'string' && type.length === 1 ? type.charCodeAt(0) : type;
  checkField('dir', dir, _IOC_DIRBITS);
  checkField('type', t, _IOC_TYPEBITS);
  checkField('nr', nr, _IOC_NRBITS);
  checkField('size', size, _IOC_SIZEBITS);
  return ((dir << _IOC_DIRSHIFT) | ((t as number) << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT) | (size << _IOC_SIZESHIFT)) >>> 0;
}

/** `_IO(type, nr)`: no argument data. */
export function _IO(type: number | string, nr: number): number {
  return _IOC(_IOC_NONE, type, nr, 0);
}

/** `_IOR(type, nr, size)`: the kernel writes `size` bytes to the argument. */
export function _IOR(type: number | string, nr: number, size: number): number {
  return _IOC(_IOC_READ, type, nr, size);
}

/** `_IOW(type, nr, size)`: the kernel reads `size` bytes from the argument. */
export function _IOW(type: number | string, nr: number, size: number): number {
  return _IOC(_IOC_WRITE, type, nr, size);
}

/** `_IOWR(type, nr, size)`: both directions. */
export function _IOWR(type: number | string, nr: number, size: number): number {
  return _IOC(_IOC_READ | _IOC_WRITE, type, nr, size);
}

/** The fields of a request number (`_IOC_DIR`, `_IOC_TYPE`, `_IOC_NR`, `_IOC_SIZE`). */
export interface DecodedIoc {
  readonly dir: number;
  readonly type: number;
  readonly nr: number;
  readonly size: number;
}

/** Split a request number into its fields. Accepts the value as unsigned or as a signed 32-bit int. */
export function decodeIoc(n: number): DecodedIoc {
  if (typeof n !== 'number') throw invalidArgType('n', 'number', n);
  if (!Number.isInteger(n) || n < -(2 ** 31) || n > 0xffffffff) {
    throw outOfRange('n', 'a 32-bit integer', n);
  }
  const u = n >>> 0;
  return {
    dir: (u >>> _IOC_DIRSHIFT) & ((1 << _IOC_DIRBITS) - 1),
    type: (u >>> _IOC_TYPESHIFT) & ((1 << _IOC_TYPEBITS) - 1),
    nr: (u >>> _IOC_NRSHIFT) & ((1 << _IOC_NRBITS) - 1),
    size: (u >>> _IOC_SIZESHIFT) & ((1 << _IOC_SIZEBITS) - 1),
  };
}

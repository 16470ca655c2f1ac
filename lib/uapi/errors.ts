/**
 * Node-style argument errors shared by every layer of kvm-sev.
 *
 * They mirror Node's own `ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE` and `ERR_OUT_OF_RANGE`
 * (same `code`, same class, messages worded like Node's) so callers can handle ours and Node's alike.
 */

import { inspect } from 'node:util';

/** The `code` values this module produces. */
export type ArgErrorCode = 'ERR_INVALID_ARG_TYPE' | 'ERR_INVALID_ARG_VALUE' | 'ERR_OUT_OF_RANGE';

/** A TypeError or RangeError carrying a Node-style `code`. */
export type ArgError<C extends ArgErrorCode = ArgErrorCode> = (C extends 'ERR_OUT_OF_RANGE' ? RangeError : TypeError) & {
  readonly code: C;
};

/** "argument" for a plain name, "property" for a dotted path (Node's wording). */
function subject(name: string): string {
  return name.includes('.') ? 'property' : 'argument';
}

/** Insert `_` every three digits, as Node does for large numbers in range errors. */
function addNumericalSeparator(digits: string): string {
  let sign = '';
  if (digits.startsWith('-')) {
    sign = '-';
    digits = digits.slice(1);
  }
  let res = '';
  let i = digits.length;
  for (; i >= 4; i -= 3) res = `_${digits.slice(i - 3, i)}${res}`;
  return `${sign}${digits.slice(0, i)}${res}`;
}

/** How Node describes the actual value in ERR_INVALID_ARG_TYPE messages. */
function describeReceived(actual: unknown): string {
  if (actual == null) return ` Received ${String(actual)}`;
  if (typeof actual === 'function') {
    return ` Received function ${(actual as { name?: string }).name || '<anonymous>'}`;
  }
  if (typeof actual === 'object') {
    const ctor = (actual as { constructor?: { name?: string } }).constructor;
    if (ctor?.name) return ` Received an instance of ${ctor.name}`;
    return ` Received ${inspect(actual, { depth: -1 })}`;
  }
  let shown = inspect(actual, { colors: false });
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`;
  return ` Received type ${typeof actual} (${shown})`;
}

function withCode<E extends Error, C extends ArgErrorCode>(err: E, code: C): E & { readonly code: C } {
  Object.defineProperty(err, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return err as E & { readonly code: C };
}

/**
 * `ERR_INVALID_ARG_TYPE` (TypeError): `name` is not of the `expected` type.
 * @param expected e.g. `'number'`, `'bigint or number'`, `'an instance of Uint8Array'`.
 */
export function invalidArgType(name: string, expected: string, actual: unknown): ArgError<'ERR_INVALID_ARG_TYPE'> {
  const msg = `The "${name}" ${subject(name)} must be ${/^(an? |one of )/.test(expected) ? '' : 'of type '}${expected}.${describeReceived(actual)}`;
  return withCode(new TypeError(msg), 'ERR_INVALID_ARG_TYPE');
}

/**
 * `ERR_INVALID_ARG_VALUE` (TypeError): `name` has the right type but an unacceptable value.
 * @param reason completes "The argument 'x' …", e.g. `'is not a known field'`. Default `'is invalid'`.
 */
export function invalidArgValue(name: string, value: unknown, reason = 'is invalid'): ArgError<'ERR_INVALID_ARG_VALUE'> {
  let shown = inspect(value, { depth: 1, breakLength: Infinity, maxArrayLength: 8, maxStringLength: 64 });
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`;
  const msg = `The ${subject(name)} '${name}' ${reason}. Received ${shown}`;
  return withCode(new TypeError(msg), 'ERR_INVALID_ARG_VALUE');
}

/**
 * `ERR_OUT_OF_RANGE` (RangeError): `value` of `name` is outside `range`.
 * @param range completes "It must be …", e.g. `'>= 0 && <= 4294967295'`.
 */
export function outOfRange(name: string, range: string, value: unknown): ArgError<'ERR_OUT_OF_RANGE'> {
  let received: string;
  if (typeof value === 'number' && Number.isInteger(value) && Math.abs(value) > 2 ** 32) {
    received = addNumericalSeparator(String(value));
  } else if (typeof value === 'bigint') {
    received = String(value);
    if (value > 2n ** 32n || value < -(2n ** 32n)) received = addNumericalSeparator(received);
    received += 'n';
  } else {
    received = inspect(value);
  }
  const msg = `The value of "${name}" is out of range. It must be ${range}. Received ${received}`;
  return withCode(new RangeError(msg), 'ERR_OUT_OF_RANGE');
}

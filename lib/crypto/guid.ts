/** GUIDs in the EFI/Microsoft byte order (`bytes_le`): first three fields little-endian. */
import { checkBytes } from '../uapi/args.js';
import { invalidArgType, invalidArgValue } from './errors.js';

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(s: unknown): s is string {
  return typeof s === 'string' && GUID_RE.test(s);
}

export function guidToBytes(guid: string): Buffer {
  if (typeof guid !== 'string') throw invalidArgType('guid', 'string', guid);
  if (!GUID_RE.test(guid)) throw invalidArgValue('guid', guid, 'must look like xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx');
  const hex = Buffer.from(guid.replace(/-/g, ''), 'hex');
  return Buffer.concat([hex.subarray(0, 4).reverse(), hex.subarray(4, 6).reverse(), hex.subarray(6, 8).reverse(), hex.subarray(8)]);
}

/** Lower-case canonical form. */
export function guidFromBytes(bytes: Uint8Array): string {
  const b = checkBytes('bytes', bytes, 16);
  const h = (x: Buffer): string => x.toString('hex');
  return [
    h(Buffer.from(b.subarray(0, 4)).reverse()),
    h(Buffer.from(b.subarray(4, 6)).reverse()),
    h(Buffer.from(b.subarray(6, 8)).reverse()),
    h(b.subarray(8, 10)),
    h(b.subarray(10, 16)),
  ].join('-');
}

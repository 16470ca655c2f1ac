/**
 * The kernel-hashes table QEMU appends to the measured OVMF image for direct kernel boot
 * (§4.1; virtee/sev-snp-measure sev_hashes.py): header GUID ‖ LE16(168), then cmdline, initrd, kernel entries of
 * GUID ‖ LE16(50) ‖ SHA-256, zero-padded to 176 bytes. The SEV launch digest is then
 * SHA-256(OVMF ‖ this table) (SEV-ES adds the VMSAs).
 */
import { createHash } from 'node:crypto';
import { checkBytes, checkObject } from '../uapi/args.js';
import { invalidArgType } from './errors.js';
import { guidToBytes } from './guid.js';

export const KERNEL_HASHES_TABLE_GUID = '9438d606-4f22-4cc9-b479-a793d411fd21';
export const KERNEL_HASHES_CMDLINE_GUID = '97d02dd8-bd20-4c94-aa78-e7714d36ab2a';
export const KERNEL_HASHES_INITRD_GUID = '44baf731-3a2f-4bd7-9af1-41e29169781d';
export const KERNEL_HASHES_KERNEL_GUID = '4de79437-abd2-427f-b835-d5b172d2045b';

export interface KernelHashesInput {
  kernel: Uint8Array;
  /** Default: empty (hash of ""). */
  initrd?: Uint8Array;
  /** Hashed with a trailing NUL; default "" (hash of one 0x00). Bytes are taken as-is plus NUL. */
  cmdline?: string | Uint8Array;
}

function entry(guid: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16LE(16 + 2 + 32);
  return Buffer.concat([guidToBytes(guid), len, createHash('sha256').update(data).digest()]);
}

export function buildKernelHashesTable(input: KernelHashesInput): Buffer {
  checkObject('input', input);
  const kernel = checkBytes('input.kernel', input.kernel);
  const initrd = input.initrd === undefined ? Buffer.alloc(0) : checkBytes('input.initrd', input.initrd);
  let cmd: Buffer;
  if (input.cmdline === undefined || typeof input.cmdline === 'string') cmd = Buffer.from(input.cmdline ?? '', 'utf8');
  else if (input.cmdline instanceof Uint8Array) cmd = Buffer.from(input.cmdline);
  else throw invalidArgType('input.cmdline', 'a string or Uint8Array', input.cmdline);
  const entries = Buffer.concat([
    entry(KERNEL_HASHES_CMDLINE_GUID, Buffer.concat([cmd, Buffer.from([0])])),
    entry(KERNEL_HASHES_INITRD_GUID, initrd),
    entry(KERNEL_HASHES_KERNEL_GUID, kernel),
  ]);
  const len = 16 + 2 + entries.length;
  const out = Buffer.alloc(Math.ceil(len / 16) * 16);
  guidToBytes(KERNEL_HASHES_TABLE_GUID).copy(out, 0);
  out.writeUInt16LE(len, 16);
  entries.copy(out, 18);
  return out;
}

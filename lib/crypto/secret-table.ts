/**
 * The GUID-keyed secret table that OVMF leaves in the SEV secret area and Linux's efi_secret
 * reads (§5; virtee/sevctl build_secrets_table):
 *   header GUID 1e74f542-71dd-4d66-963e-ef4287ff173b ‖ LE32(table length incl. header)
 *   entries: GUID ‖ LE32(20 + payload length) ‖ payload
 * zero-padded to a 16-byte multiple, since LAUNCH_SECRET lengths must be 16-byte multiples.
 */
import { copy } from './bytes.js';
import { checkBytes } from '../uapi/args.js';
import { invalidArgType, invalidArgValue, SevFormatError } from './errors.js';
import { guidFromBytes, guidToBytes, isGuid } from './guid.js';

export const SECRET_TABLE_GUID = '1e74f542-71dd-4d66-963e-ef4287ff173b';
/** Well-known entry: the disk (LUKS) passphrase. */
export const LUKS_KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';
/** OVMF's GUIDed-table entry giving the secret area (`base u32, size u32`), QEMU's default gpa. */
export const OVMF_SEV_SECRET_AREA_GUID = '4c2eb361-7d9b-4cc3-8081-127c90d3d294';

const HEADER = 20;

export interface SecretTableEntry {
  guid: string;
  data: Uint8Array;
}

/**
 * Build a table. The length field counts header and entries but not the trailing padding
 * (sevctl's convention; efi_secret accepts either).
 */
export function buildSecretTable(entries: Iterable<SecretTableEntry>): Buffer {
  const parts: Buffer[] = [];
  const seen = new Set<string>();
  for (const e of entries) {
    if (typeof e !== 'object' || e === null) throw invalidArgType('entries[]', 'object', e);
    if (!isGuid(e.guid)) throw invalidArgValue('entries[].guid', e.guid, 'must be a GUID string');
    const guid = e.guid.toLowerCase();
    if (seen.has(guid)) throw invalidArgValue('entries[].guid', e.guid, 'appears twice');
    seen.add(guid);
    const data = checkBytes('entries[].data', e.data);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(HEADER + data.length);
    parts.push(guidToBytes(guid), len, data);
  }
  const body = Buffer.concat(parts);
  const total = HEADER + body.length;
  const out = Buffer.alloc(Math.ceil(total / 16) * 16);
  guidToBytes(SECRET_TABLE_GUID).copy(out, 0);
  out.writeUInt32LE(total, 16);
  body.copy(out, HEADER);
  return out;
}

/** Parse a table; bytes after the declared length (padding) are ignored. */
export function parseSecretTable(bytes: Uint8Array): SecretTableEntry[] {
  const b = checkBytes('bytes', bytes);
  if (b.length < HEADER) throw new SevFormatError(`a secret table is at least ${HEADER} bytes`);
  if (guidFromBytes(b.subarray(0, 16)) !== SECRET_TABLE_GUID) throw new SevFormatError('secret table header GUID missing');
  const total = b.readUInt32LE(16);
  if (total < HEADER || total > b.length) throw new SevFormatError(`secret table length ${total} does not fit ${b.length} bytes`);
  const out: SecretTableEntry[] = [];
  for (let off = HEADER; off < total;) {
    if (total - off < HEADER) throw new SevFormatError(`truncated secret table entry at offset ${off}`);
    const len = b.readUInt32LE(off + 16);
    if (len < HEADER || off + len > total) throw new SevFormatError(`secret table entry at offset ${off} has bad length ${len}`);
    out.push({ guid: guidFromBytes(b.subarray(off, off + 16)), data: copy(b.subarray(off + HEADER, off + len)) });
    off += len;
  }
  return out;
}

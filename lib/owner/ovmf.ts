/**
 * The GUIDed table at the end of an OVMF image, as QEMU reads it (hw/i386/pc_sysfw_ovmf.c:
 * pc_system_parse_ovmf_flash(), pc_system_ovmf_table_find()). The table ends 32 bytes before the
 * end of the image (the reset vector's 16 bytes and their padding) with the footer GUID
 * 96b582de-1fb2-45f7-baea-a366c55a082d, preceded by the table's u16 length (footer entry included).
 * Each entry, read backwards from there, is `data ‖ LE16(length of data + 18) ‖ GUID`.
 *
 * The guest owner needs two entries: the SEV-ES reset block (the first instruction of an AP: QEMU
 * starts every vCPU but the first there, target/i386/sev.c: sev_es_save_reset_vector()), and the
 * SEV hashes table area (where QEMU puts the kernel/initrd/cmdline hashes for direct kernel boot,
 * target/i386/sev.c: sev_add_kernel_loader_hashes(), which refuses a kernel without it).
 */
import { checkBytes } from '../uapi/args.js';
import { SevFormatError } from '../crypto/errors.js';
import { guidFromBytes } from '../crypto/guid.js';

export const OVMF_TABLE_FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d';
/** `SevInfoBlock { u32 reset_addr }`: the SEV-ES AP reset vector (QEMU's SEV_INFO_BLOCK_GUID). */
export const SEV_ES_RESET_BLOCK_GUID = '00f771de-1a7e-4fcb-890e-68c77e2fb44e';
/** `SevHashTableDescriptor { u32 base; u32 size }`: where the kernel hashes table goes (SEV_HASH_TABLE_RV_GUID). */
export const SEV_HASH_TABLE_RV_GUID = '7255371f-3a3b-4b04-927b-1da6efa8d454';

const GUID = 16;
const ENTRY_HEADER = GUID + 2;
/** The footer GUID starts this many bytes before the end of the image. */
const FOOTER_FROM_END = 48;

/**
 * The table's entries by GUID (lower case). An image without the footer GUID has no table: the
 * result is empty, as QEMU treats it. A table whose lengths do not fit throws SevFormatError.
 */
export function ovmfFooterTable(image: Uint8Array): Map<string, Buffer> {
  const b = checkBytes('firmware', image);
  const out = new Map<string, Buffer>();
  if (b.length < FOOTER_FROM_END + 2) return out;
  const footer = b.length - FOOTER_FROM_END;
  if (guidFromBytes(b.subarray(footer, footer + GUID)) !== OVMF_TABLE_FOOTER_GUID) return out;
  const total = b.readUInt16LE(footer - 2);
  const len = total - ENTRY_HEADER;
  if (len < 0 || len > footer - 2) {
    throw new SevFormatError(`the OVMF footer table declares ${total} bytes, which do not fit before the footer at offset ${footer}`);
  }
  const start = footer - 2 - len;
  for (let end = footer - 2; end - start >= ENTRY_HEADER;) {
    const guid = guidFromBytes(b.subarray(end - GUID, end));
    const size = b.readUInt16LE(end - ENTRY_HEADER);
    if (size < ENTRY_HEADER || size > end - start) {
      throw new SevFormatError(`the OVMF footer table entry ${guid} declares ${size} bytes, which do not fit the table`);
    }
    out.set(guid, Buffer.from(b.subarray(end - size, end - ENTRY_HEADER)));
    end -= size;
  }
  return out;
}

function u32Entry(table: Map<string, Buffer>, guid: string, what: string, fields = 1): number[] | undefined {
  const data = table.get(guid);
  if (data === undefined) return undefined;
  if (data.length < 4 * fields)
    throw new SevFormatError(`the OVMF ${what} entry (${guid}) has ${data.length} bytes, fewer than ${4 * fields}`);
  return Array.from({ length: fields }, (_, i) => data.readUInt32LE(4 * i));
}

/**
 * The SEV-ES reset address of the APs (the SEV-ES reset block), or undefined if the image has no
 * such entry (QEMU then refuses to start an SEV-ES guest). A zero address is refused, as QEMU does.
 */
export function sevEsResetAddress(image: Uint8Array): number | undefined {
  const v = u32Entry(ovmfFooterTable(image), SEV_ES_RESET_BLOCK_GUID, 'SEV-ES reset block');
  if (v === undefined) return undefined;
  if (v[0] === 0) throw new SevFormatError(`the OVMF SEV-ES reset block (${SEV_ES_RESET_BLOCK_GUID}) holds a zero reset address`);
  return v[0];
}

/** The area the image reserves for the kernel hashes table, or undefined if it has none. */
export function sevHashesTableArea(image: Uint8Array): { base: number; size: number } | undefined {
  const v = u32Entry(ovmfFooterTable(image), SEV_HASH_TABLE_RV_GUID, 'SEV hashes table', 2);
  return v === undefined ? undefined : { base: v[0]!, size: v[1]! };
}

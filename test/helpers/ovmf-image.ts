/**
 * Test helper (not a test): synthetic OVMF images with the footer GUID table QEMU reads
 * (hw/i386/pc_sysfw_ovmf.c), written here byte by byte rather than with lib/owner's parser's help.
 */
import { randomBytes } from 'node:crypto';

export const FOOTER = '96b582de-1fb2-45f7-baea-a366c55a082d';
export const RESET_BLOCK = '00f771de-1a7e-4fcb-890e-68c77e2fb44e';
export const HASHES = '7255371f-3a3b-4b04-927b-1da6efa8d454';
export const OTHER = '4c2eb361-7d9b-4cc3-8081-127c90d3d294'; // the SEV secret area entry, which the digest ignores

/** EFI byte order: the first three fields little-endian. */
export function guid(s: string): Buffer {
  const h = Buffer.from(s.replace(/-/g, ''), 'hex');
  return Buffer.concat([
    Buffer.from(h.subarray(0, 4)).reverse(),
    Buffer.from(h.subarray(4, 6)).reverse(),
    Buffer.from(h.subarray(6, 8)).reverse(),
    h.subarray(8),
  ]);
}

export const le16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
export const le32 = (...ns: number[]) => Buffer.concat(ns.map((n) => Buffer.from(Uint32Array.of(n).buffer)));

/**
 * An OVMF-like image: random code, and at its end the GUIDed table (entries `data ‖ LE16(size) ‖
 * GUID`, then LE16(total) and the footer GUID), which ends 32 bytes before the end of the image.
 */
export function ovmf(size: number, entries: [string, Buffer][]): Buffer {
  const img = randomBytes(size);
  const body = Buffer.concat(entries.map(([g, d]) => Buffer.concat([d, le16(d.length + 18), guid(g)])));
  const table = Buffer.concat([body, le16(body.length + 18), guid(FOOTER)]);
  table.copy(img, size - 32 - table.length);
  return img;
}

export const AP_RESET = 0x0080b004;
export const HASHES_AREA = { base: 0x80c00, size: 0x400 };
export const FW_SIZE = 0x40000;
export const fullImage = () =>
  ovmf(FW_SIZE, [
    [OTHER, le32(0x80a00, 0x1000)],
    [HASHES, le32(HASHES_AREA.base, HASHES_AREA.size)],
    [RESET_BLOCK, le32(AP_RESET)],
  ]);

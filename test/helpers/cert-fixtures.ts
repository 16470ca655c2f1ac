/** Test helper (not a test): the certificate fixtures in test/fixtures/ and small byte utilities. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'kvm-sev') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('package root (package.json of kvm-sev) not found');
    dir = up;
  }
}

/** `<package root>/test/fixtures/sev-certs`: real AMD chains (sources and SHA-256 in test/fixtures/README.md). */
export const SEV_CERTS_DIR = resolve(packageRoot(), 'test', 'fixtures', 'sev-certs');

export const GENERATIONS = ['naples', 'rome', 'milan', 'genoa', 'turin'] as const;
export const PLATFORMS = ['naples', 'rome'] as const;
export type Platform = (typeof PLATFORMS)[number];

export function fixture(rel: string): Buffer {
  return readFileSync(join(SEV_CERTS_DIR, rel));
}

export function platformCerts(p: Platform): { cek: Buffer; oca: Buffer; pek: Buffer; pdh: Buffer } {
  return {
    cek: fixture(`platform-${p}/cek.cert`),
    oca: fixture(`platform-${p}/oca.cert`),
    pek: fixture(`platform-${p}/pek.cert`),
    pdh: fixture(`platform-${p}/pdh.cert`),
  };
}

export function rootCerts(g: string): { ark: Buffer; ask: Buffer } {
  return { ark: fixture(`amd-root/${g}/ark.cert`), ask: fixture(`amd-root/${g}/ask.cert`) };
}

/** Copy of `b` with byte `off` XORed with `mask`. */
export function flip(b: Uint8Array, off: number, mask = 0x01): Buffer {
  const c = Buffer.from(b);
  c[off] = c[off]! ^ mask;
  return c;
}

/** Copy of `b` with a u32 LE written at `off`. */
export function withU32(b: Uint8Array, off: number, v: number): Buffer {
  const c = Buffer.from(b);
  c.writeUInt32LE(v >>> 0, off);
  return c;
}

export const hex = (h: string): Buffer => Buffer.from(h, 'hex');

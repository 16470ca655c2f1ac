/** Terminal output for the CLI: colour only on a terminal (and never with NO_COLOR), JSON on request, progress bars. */
export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

const colourOn = (): boolean => process.stdout.isTTY === true && !process.env['NO_COLOR'] && process.env['TERM'] !== 'dumb';

const paint = (code: string) => (s: string) => (colourOn() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const green = paint('32');
export const red = paint('31');
export const yellow = paint('33');
export const dim = paint('2');
export const bold = paint('1');

export function mark(status: 'ok' | 'warn' | 'fail' | 'info'): string {
  return status === 'ok' ? green('ok  ') : status === 'warn' ? yellow('warn') : status === 'fail' ? red('FAIL') : dim('info');
}

/** JSON that survives bigint and byte arrays (hex). */
export function toJson(value: unknown): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, k: string, v: unknown) {
      const raw = this[k]; // before Buffer#toJSON turned it into {type, data}
      if (typeof raw === 'bigint') return `0x${raw.toString(16)}`;
      if (raw instanceof Uint8Array) return Buffer.from(raw).toString('hex');
      return v;
    },
    2,
  );
}

/** A one-line progress bar on stderr, only on a terminal. */
export function progressBar(label: string): { update(done: number, total: number): void; done(): void } {
  const tty = process.stderr.isTTY === true;
  let last = -1;
  return {
    update(done, total) {
      if (!tty) return;
      const pct = total ? Math.floor((done / total) * 100) : 100;
      if (pct === last) return;
      last = pct;
      const width = 30;
      const fill = Math.round((pct / 100) * width);
      process.stderr.write(`\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}%`);
    },
    done() {
      if (tty && last >= 0) process.stderr.write('\r\x1b[K');
    },
  };
}

/** A usage error: printed with the command's help, exit code 2. */
export class UsageError extends Error {}

/**
 * Hex bytes from --NAME; `bytes` is the length it must have (one, or a list of lengths it may have).
 * Whitespace and colons between bytes are allowed, as tools print them.
 */
export function hex(name: string, s: string | undefined, bytes?: number | readonly number[]): Buffer {
  if (s === undefined) throw new UsageError(`--${name} is required`);
  const clean = s.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (!/^([0-9a-f]{2})*$/i.test(clean)) throw new UsageError(`--${name} must be hex bytes, got '${s}'`);
  const b = Buffer.from(clean, 'hex');
  const lengths = bytes === undefined ? undefined : typeof bytes === 'number' ? [bytes] : bytes;
  if (lengths && !lengths.includes(b.length)) {
    const want = lengths.map((n) => `${n} bytes (${n * 2} hex digits)`).join(' or ');
    throw new UsageError(`--${name} must be ${want}, got ${b.length} byte${b.length === 1 ? '' : 's'}`);
  }
  return b;
}

/** An unsigned integer from --NAME, decimal or 0x hex, at most `max` (the width of the field it fills). */
export function int(name: string, s: string | undefined, max: number, dflt?: number): number {
  if (s === undefined) {
    if (dflt === undefined) throw new UsageError(`--${name} is required`);
    return dflt;
  }
  const n = /^(0x[0-9a-f]+|\d+)$/i.test(s.trim()) ? Number(s.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n > max)
    throw new UsageError(`--${name} must be an integer from 0 to ${max} (decimal or 0x hex), got '${s}'`);
  return n;
}

/** "1.55" → [1, 55]; each part is a byte, as PLATFORM_STATUS reports it. */
export function apiVersion(s: string | undefined): [number, number] {
  const m = /^(\d+)\.(\d+)$/.exec(s ?? '');
  if (!m) throw new UsageError(`--api must look like MAJOR.MINOR (e.g. 1.55), got '${s ?? ''}'`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  if (major > 255 || minor > 255)
    throw new UsageError(`--api: the firmware's major and minor versions are each 0 to 255 (PLATFORM_STATUS), got '${s ?? ''}'`);
  return [major, minor];
}

const UNITS = { '': 0n, K: 10n, M: 20n, G: 30n, T: 40n, P: 50n } as const;

/** "512M", "2G", "10T", "64KiB" or bytes → bytes (binary units). */
export function parseSize(name: string, s: string): bigint {
  const m = /^(\d+)\s*(?:([KMGTP])(?:i?B)?|B)?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--${name} takes bytes or a size like 64K, 512M, 2G or 1T, got '${s}'`);
  return BigInt(m[1]!) << UNITS[(m[2] ?? '').toUpperCase() as keyof typeof UNITS];
}

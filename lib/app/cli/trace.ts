/** `kvm-sev trace`: decode a recorded ioctl trace (the mock's `host.trace`, saved as JSON) into lines. */
import { parseArgs } from 'node:util';
import { sevStatusName } from '../../uapi/sev-status.js';
import { readInput } from './files.js';
import { dim, EXIT, red, toJson, UsageError } from './output.js';

export const TRACE_HELP = `Usage: kvm-sev trace FILE [--sev] [--json]

Prints one line per ioctl of a trace recorded by the mock backend (MockHost({ trace: true }), then
JSON.stringify(host.trace.entries); or \`kvm-sev demo --backend mock --trace FILE\`): the fd, the
request and SEV command, the result or errno with the firmware status, and the firmware commands it
issued. --sev keeps only SEV commands; --json re-emits the entries as a JSON array.`;

interface Entry {
  seq: number;
  fd: number;
  fdKind: string;
  request: string;
  arg?: unknown;
  command?: string;
  dataIn?: Record<string, unknown>;
  result?: number;
  errno?: string;
  fwError?: number;
  firmware?: { command: string; status: number }[];
}

function parseJson(text: string): unknown {
  const t = text.trim();
  if (t.startsWith('[') || t.startsWith('{')) {
    try {
      return JSON.parse(t);
    } catch (e) {
      if (!t.startsWith('{')) throw e;
    }
  }
  // One entry per line (NDJSON).
  return t
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as unknown);
}

/** Why `e` is not a trace entry, or undefined when it is one. */
function notAnEntry(e: unknown): string | undefined {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'is not an object';
  const r = e as Record<string, unknown>;
  for (const k of ['seq', 'fd'] as const) if (typeof r[k] !== 'number') return `has no numeric "${k}"`;
  for (const k of ['fdKind', 'request'] as const) if (typeof r[k] !== 'string') return `has no "${k}" string`;
  return undefined;
}

/** The entries of a saved trace: a JSON array, `{ "entries": [...] }`, or one JSON entry per line. */
function parse(file: string, text: string): Entry[] {
  let v: unknown;
  try {
    v = parseJson(text);
  } catch (e) {
    throw new UsageError(`'${file}' is not a kvm-sev trace: it is not JSON (${(e as Error).message})`);
  }
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && Array.isArray((v as { entries?: unknown }).entries))
    v = (v as { entries: unknown[] }).entries;
  else if (!Array.isArray(v) && notAnEntry(v) === undefined) v = [v]; // a one-line NDJSON trace
  if (!Array.isArray(v))
    throw new UsageError(
      `'${file}' is not a kvm-sev trace: it holds a JSON ${typeof v === 'object' ? (v === null ? 'null' : 'object') : typeof v}, not an array of ioctl entries`,
    );
  v.forEach((e, i) => {
    const why = notAnEntry(e);
    if (why) throw new UsageError(`'${file}' is not a kvm-sev trace: entry ${i} ${why}`);
  });
  return v as Entry[];
}

export function trace(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { sev: { type: 'boolean' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(TRACE_HELP);
    return EXIT.OK;
  }
  if (positionals.length !== 1) throw new UsageError('give one trace FILE');
  const file = positionals[0]!;
  let entries = parse(file, readInput('FILE', file).toString('utf8'));
  if (values.sev)
    entries = entries.filter((e) => e.command !== undefined || e.request.startsWith('KVM_MEMORY_ENCRYPT') || e.request === 'SEV_ISSUE_CMD');
  if (values.json) {
    console.log(toJson(entries));
    return EXIT.OK;
  }
  for (const e of entries) {
    const what = e.command ? `${e.request} ${e.command}` : e.request;
    const res = e.errno
      ? red(`${e.errno}${e.fwError !== undefined && e.fwError !== 0 ? ` (${sevStatusName(e.fwError)})` : ''}`)
      : `= ${e.result ?? 0}`;
    const fw = e.firmware?.length
      ? dim(`  fw: ${e.firmware.map((f) => `${f.command}${f.status ? `→${sevStatusName(f.status)}` : ''}`).join(', ')}`)
      : '';
    const a = e.arg;
    const arg =
      a === undefined
        ? ''
        : ` (${typeof a === 'string' || typeof a === 'number' || typeof a === 'bigint' ? String(a) : JSON.stringify(a)})`;
    console.log(`${String(e.seq).padStart(4)} ${`${e.fdKind}:${e.fd}`.padEnd(9)} ${what}${arg} ${res}${fw}`);
  }
  return EXIT.OK;
}

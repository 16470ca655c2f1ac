/** `kvm-sev trace`: decode a recorded ioctl trace (the mock's `host.trace`, saved as JSON) into lines. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { sevStatusName } from '../../uapi/sev-status.js';
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

function parse(text: string): Entry[] {
  const t = text.trim();
  if (t.startsWith('[')) return JSON.parse(t) as Entry[];
  if (t.startsWith('{') && t.includes('"entries"')) return (JSON.parse(t) as { entries: Entry[] }).entries;
  return t
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Entry);
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
  let entries: Entry[];
  try {
    entries = parse(readFileSync(positionals[0]!, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read a trace from ${positionals[0]}: ${(e as Error).message}`);
  }
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
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- a trace's arg is a number or a string
    const arg = e.arg !== undefined ? ` (${String(e.arg)})` : '';
    console.log(`${String(e.seq).padStart(4)} ${`${e.fdKind}:${e.fd}`.padEnd(9)} ${what}${arg} ${res}${fw}`);
  }
  return EXIT.OK;
}

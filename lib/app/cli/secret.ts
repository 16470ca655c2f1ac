/** `kvm-sev secret`: package a LAUNCH_SECRET for a measured guest (the guest owner's side). */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildSecret, type SecretTableEntry } from '../../owner/index.js';
import { EXIT, hex, toJson, UsageError } from './output.js';

export const SECRET_HELP = `Usage: kvm-sev secret (--tek HEX | --tek-file F) (--tik HEX | --tik-file F) --measurement HEX
                     (--entry GUID=FILE ... | --raw FILE) [--out-header F --out-secret F] [--json]

Builds the LAUNCH_SECRET packet: the 52-byte header (flags, IV, MAC) and the ciphertext, AES-128-CTR with
the TEK and HMAC-SHA256 with the TIK over the measurement (AMD SEV API spec, LAUNCH_SECRET). --entry makes the
GUID-keyed secret table OVMF reads (efi_secret); --raw takes bytes already padded to 16.
Prints base64 header and secret (what QEMU's sev-inject-launch-secret takes) unless --out-* are given.`;

export function secret(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      tek: { type: 'string' },
      'tek-file': { type: 'string' },
      tik: { type: 'string' },
      'tik-file': { type: 'string' },
      measurement: { type: 'string' },
      entry: { type: 'string', multiple: true },
      raw: { type: 'string' },
      'out-header': { type: 'string' },
      'out-secret': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(SECRET_HELP);
    return EXIT.OK;
  }
  const key = (n: 'tek' | 'tik') => (values[`${n}-file`] ? readFileSync(values[`${n}-file`]!) : hex(n, values[n], 16));
  let payload: Uint8Array | SecretTableEntry[];
  if (values.raw) payload = readFileSync(values.raw);
  else if (values.entry?.length) {
    payload = values.entry.map((e) => {
      const i = e.indexOf('=');
      if (i < 0) throw new UsageError(`--entry takes GUID=FILE, got '${e}'`);
      return { guid: e.slice(0, i), data: readFileSync(e.slice(i + 1)) };
    });
  } else throw new UsageError('give --entry GUID=FILE or --raw FILE');
  const m = hex('measurement', values.measurement);
  const measure = m.length === 48 ? m.subarray(0, 32) : m; // MEASURE, or MEASURE ‖ MNONCE: the MAC covers MEASURE
  const s = buildSecret({ tek: key('tek'), tik: key('tik'), measurement: { measure }, secret: payload });
  if (values['out-header']) writeFileSync(values['out-header'], s.header);
  if (values['out-secret']) writeFileSync(values['out-secret'], s.trans);
  if (values.json) console.log(toJson({ header: s.header.toString('base64'), secret: s.trans.toString('base64'), length: s.trans.length }));
  else if (!values['out-header'] && !values['out-secret'])
    console.log(`header ${s.header.toString('base64')}\nsecret ${s.trans.toString('base64')}`);
  return EXIT.OK;
}

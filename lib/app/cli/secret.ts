/** `kvm-sev secret`: package a LAUNCH_SECRET for a measured guest (the guest owner's side). */
import { parseArgs } from 'node:util';
import { MAX_PACKET_LENGTH } from '../../crypto/secret.js';
import { buildSecret, buildSecretTable, type SecretTableEntry } from '../../owner/index.js';
import { readInput, readSized, writeOutput } from './files.js';
import { EXIT, hex, toJson, UsageError } from './output.js';

export const SECRET_HELP = `Usage: kvm-sev secret (--tek HEX | --tek-file F) (--tik HEX | --tik-file F) --measurement HEX
                     (--entry GUID=FILE ... | --raw FILE) [--out-header F --out-secret F] [--json]

Builds the LAUNCH_SECRET packet: the 52-byte header (flags, IV, MAC) and the ciphertext, AES-128-CTR with
the TEK and HMAC-SHA256 with the TIK over the measurement (AMD SEV API spec, pub. 55766, LAUNCH_SECRET).
--measurement is LAUNCH_MEASURE's output: 32 bytes (MEASURE) or 48 (MEASURE ‖ MNONCE).
--entry makes the GUID-keyed secret table OVMF reads (efi_secret); --raw takes bytes already padded to a
multiple of 16. Either way the packet is 16 to ${MAX_PACKET_LENGTH} bytes.
Prints base64 header and secret (what QEMU's sev-inject-launch-secret takes), or writes both with
--out-header and --out-secret (together).`;

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** --entry GUID=FILE ... checked and read, naming the entry at fault. */
function entries(list: readonly string[]): SecretTableEntry[] {
  const seen = new Set<string>();
  return list.map((e) => {
    const i = e.indexOf('=');
    if (i < 0) throw new UsageError(`--entry takes GUID=FILE, got '${e}'`);
    const guid = e.slice(0, i);
    if (!GUID.test(guid)) throw new UsageError(`--entry '${e}': '${guid}' is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
    if (seen.has(guid.toLowerCase())) throw new UsageError(`--entry: GUID ${guid} is given twice`);
    seen.add(guid.toLowerCase());
    return { guid, data: readInput(`--entry ${guid}`, e.slice(i + 1)) };
  });
}

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
  // Both or neither: the header and the ciphertext are useless apart.
  const outHeader = values['out-header'];
  const outSecret = values['out-secret'];
  if ((outHeader === undefined) !== (outSecret === undefined))
    throw new UsageError(
      `--out-header and --out-secret go together (only ${outHeader !== undefined ? '--out-header' : '--out-secret'} was given)`,
    );
  const key = (n: 'tek' | 'tik') => {
    const file = values[`${n}-file`];
    if (file !== undefined && values[n] !== undefined) throw new UsageError(`give --${n} or --${n}-file, not both`);
    return file !== undefined ? readSized(`--${n}-file`, file, 16) : hex(n, values[n], 16);
  };
  const tek = key('tek');
  const tik = key('tik');
  const measurement = hex('measurement', values.measurement, [32, 48]);
  if (values.raw !== undefined && values.entry?.length) throw new UsageError('give --entry or --raw, not both');
  let payload: Uint8Array | SecretTableEntry[];
  let length: number;
  if (values.raw !== undefined) {
    payload = readInput('--raw', values.raw);
    length = payload.length;
    if (length === 0 || length % 16 !== 0 || length > MAX_PACKET_LENGTH)
      throw new UsageError(`--raw: '${values.raw}' holds ${length} bytes; a secret is a multiple of 16 bytes, 16 to ${MAX_PACKET_LENGTH}`);
  } else if (values.entry?.length) {
    payload = entries(values.entry);
    length = buildSecretTable(payload).length;
    if (length > MAX_PACKET_LENGTH)
      throw new UsageError(`--entry: the secret table would be ${length} bytes, over the ${MAX_PACKET_LENGTH} a LAUNCH_SECRET carries`);
  } else throw new UsageError('give --entry GUID=FILE or --raw FILE');
  // The MAC covers MEASURE, the first 32 bytes of what LAUNCH_MEASURE returned.
  const s = buildSecret({ tek, tik, measurement: { measure: measurement.subarray(0, 32) }, secret: payload });
  if (outHeader !== undefined && outSecret !== undefined) {
    writeOutput('--out-header', outHeader, s.header);
    writeOutput('--out-secret', outSecret, s.trans);
  }
  if (values.json) console.log(toJson({ header: s.header.toString('base64'), secret: s.trans.toString('base64'), length: s.trans.length }));
  else if (outHeader === undefined) console.log(`header ${s.header.toString('base64')}\nsecret ${s.trans.toString('base64')}`);
  else console.log(`wrote the ${s.header.length}-byte header to ${outHeader} and the ${s.trans.length}-byte secret to ${outSecret}`);
  return EXIT.OK;
}

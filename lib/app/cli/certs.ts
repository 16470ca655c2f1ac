/** `kvm-sev certs verify`: check a platform's SEV certificate chain against AMD's roots. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseAmdCert, parseCertBundle, parseSevCert, verifyChain, type AmdGeneration } from '../../owner/index.js';
import { SevChainError } from '../../crypto/errors.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mockAmdRoot } from '../mock-behind.js';
import { SevPlatform } from '../../sev/platform.js';
import { SEV_CERT_SIZE } from '../../crypto/sev-cert.js';
import { BACKEND_OPTION, hostFrom } from './backend-option.js';
import { EXIT, green, red, toJson, UsageError } from './output.js';

export const CERTS_HELP = `Usage: kvm-sev certs verify (--bundle FILE | --pdh F --pek F --oca F --cek F) [--ask F --ark F]
                        [--generation naples|rome|milan|genoa|turin] [--root-ark F --root-ask F] [--json]
       kvm-sev certs export --out DIR [--backend native|hybrid|mock] [--json]

verify: checks ARK → ASK → CEK → PEK → PDH and OCA → PEK against AMD's built-in roots (Naples to Turin),
        or extra trusted roots (--root-ark/--root-ask, e.g. a mock platform's). A bundle is a
        \`sevctl export\` file: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK].
export: writes the platform's pdh.cert, pek.cert, oca.cert, cek.cert from /dev/sev (PDH_CERT_EXPORT).
Exit status: 0 the chain verifies, 1 it does not, 2 usage error.`;

export function certsVerify(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      bundle: { type: 'string' },
      pdh: { type: 'string' },
      pek: { type: 'string' },
      oca: { type: 'string' },
      cek: { type: 'string' },
      ask: { type: 'string' },
      ark: { type: 'string' },
      generation: { type: 'string' },
      'root-ark': { type: 'string' },
      'root-ask': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(CERTS_HELP);
    return EXIT.OK;
  }
  const read = (f: string) => readFileSync(f);
  let input;
  if (values.bundle) {
    const b = parseCertBundle(read(values.bundle));
    input = { pdh: b.pdh, pek: b.pek, oca: b.oca, cek: b.cek, ...(b.ark && b.ask ? { ark: b.ark, ask: b.ask } : {}) };
  } else {
    for (const k of ['pdh', 'pek', 'oca', 'cek'] as const) if (!values[k]) throw new UsageError(`--${k} (or --bundle) is required`);
    input = {
      pdh: parseSevCert(read(values.pdh!)),
      pek: parseSevCert(read(values.pek!)),
      oca: parseSevCert(read(values.oca!)),
      cek: parseSevCert(read(values.cek!)),
      ...(values.ark && values.ask ? { ark: parseAmdCert(read(values.ark)), ask: parseAmdCert(read(values.ask)) } : {}),
    };
  }
  if ((values['root-ark'] === undefined) !== (values['root-ask'] === undefined))
    throw new UsageError('--root-ark and --root-ask go together');
  const extraRoots = values['root-ark'] ? [{ ark: read(values['root-ark']), ask: read(values['root-ask']!) }] : [];
  try {
    const v = verifyChain({ ...input, extraRoots, ...(values.generation ? { generation: values.generation as AmdGeneration } : {}) });
    const gen = (v as { generation?: string }).generation;
    if (values.json) console.log(toJson({ ok: true, generation: gen ?? null }));
    else console.log(`${green('verified')}: ARK → ASK → CEK → PEK → PDH, OCA → PEK${gen ? ` (${gen} root)` : ''}`);
    return EXIT.OK;
  } catch (e) {
    if (!(e instanceof SevChainError)) throw e;
    if (values.json) console.log(toJson({ ok: false, link: e.link, reason: e.reason, message: e.message }));
    else console.log(`${red('NOT verified')}: ${e.link}: ${e.reason} (${e.message})`);
    return EXIT.FAILED;
  }
}

/** PDH_CERT_EXPORT into files; a mocked firmware's ASK and ARK too (a real host fetches them from AMD). */
export async function certsExport(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...BACKEND_OPTION, out: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(CERTS_HELP);
    return EXIT.OK;
  }
  if (!values.out) throw new UsageError('--out DIR is required');
  const host = await hostFrom(values);
  using p = SevPlatform.open(host.backend);
  const { pdh, certChain } = await p.pdhCertExport();
  mkdirSync(values.out, { recursive: true });
  const files: Record<string, Uint8Array> = {
    'pdh.cert': pdh,
    'pek.cert': certChain.subarray(0, SEV_CERT_SIZE),
    'oca.cert': certChain.subarray(SEV_CERT_SIZE, 2 * SEV_CERT_SIZE),
    'cek.cert': certChain.subarray(2 * SEV_CERT_SIZE, 3 * SEV_CERT_SIZE),
  };
  const root = mockAmdRoot(host.backend);
  if (root) {
    files['ask.cert'] = root.ask;
    files['ark.cert'] = root.ark;
  }
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(values.out, name), bytes);
  if (values.json) console.log(toJson({ backend: host.name, out: values.out, files: Object.keys(files) }));
  else
    console.log(
      `wrote ${Object.keys(files).join(', ')} to ${values.out}${files['ark.cert'] ? " (ark/ask: the mock platform's root)" : ''}`,
    );
  return EXIT.OK;
}

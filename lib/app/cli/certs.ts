/** `kvm-sev certs verify`: check a platform's SEV certificate chain against AMD's roots. */
import { parseArgs } from 'node:util';
import { AMD_GENERATIONS, parseAmdCert, parseCertBundle, parseSevCert, verifyChain, type AmdGeneration } from '../../owner/index.js';
import { SevChainError, SevCryptoError } from '../../crypto/errors.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { mockAmdRoot } from '../mock-behind.js';
import { SevPlatform } from '../../sev/platform.js';
import { SEV_CERT_SIZE } from '../../crypto/sev-cert.js';
import { BACKEND_OPTION, hostFrom } from './backend-option.js';
import { readInput, writeOutput } from './files.js';
import { EXIT, green, red, toJson, UsageError } from './output.js';

export const CERTS_HELP = `Usage: kvm-sev certs verify (--bundle FILE | --pdh F --pek F --oca F --cek F) [--ask F --ark F]
                        [--generation naples|rome|milan|genoa|turin] [--root-ark F --root-ask F] [--json]
       kvm-sev certs export --out DIR [--backend native|hybrid|mock] [--json]

verify: checks ARK → ASK → CEK → PEK → PDH and OCA → PEK against AMD's built-in roots (Naples to Turin),
        or extra trusted roots (--root-ark/--root-ask, e.g. a mock platform's). A bundle is a
        \`sevctl export\` file: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK].
export: writes the platform's pdh.cert, pek.cert, oca.cert, cek.cert from /dev/sev (PDH_CERT_EXPORT).
Exit status: 0 the chain verifies, 1 it does not, 2 usage error.`;

/** Parses the file a flag names, turning a format error into a usage error that names both. */
function parsed<T>(flag: string, path: string, what: string, parse: (b: Buffer) => T): T {
  const bytes = readInput(flag, path);
  try {
    return parse(bytes);
  } catch (e) {
    if (e instanceof SevCryptoError) throw new UsageError(`${flag}: '${path}' is not ${what} (${e.message})`);
    throw e;
  }
}

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
  const generation = values.generation;
  if (generation !== undefined && !(AMD_GENERATIONS as readonly string[]).includes(generation))
    throw new UsageError(`--generation must be one of ${AMD_GENERATIONS.join(', ')}, got '${generation}'`);
  if ((values.ark === undefined) !== (values.ask === undefined)) throw new UsageError('--ark and --ask go together');
  if ((values['root-ark'] === undefined) !== (values['root-ask'] === undefined))
    throw new UsageError('--root-ark and --root-ask go together');
  const sev = (flag: string, path: string) => parsed(flag, path, 'an SEV certificate', parseSevCert);
  const amd = (flag: string, path: string) => parsed(flag, path, 'an AMD (ARK/ASK) certificate', parseAmdCert);
  let input;
  if (values.bundle !== undefined) {
    for (const k of ['pdh', 'pek', 'oca', 'cek', 'ark', 'ask'] as const)
      if (values[k] !== undefined) throw new UsageError(`give --bundle or the certificates one by one, not both (--${k})`);
    const b = parsed('--bundle', values.bundle, 'a certificate bundle (PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK])', parseCertBundle);
    input = { pdh: b.pdh, pek: b.pek, oca: b.oca, cek: b.cek, ...(b.ark && b.ask ? { ark: b.ark, ask: b.ask } : {}) };
  } else {
    for (const k of ['pdh', 'pek', 'oca', 'cek'] as const)
      if (values[k] === undefined) throw new UsageError(`--${k} (or --bundle) is required`);
    input = {
      pdh: sev('--pdh', values.pdh!),
      pek: sev('--pek', values.pek!),
      oca: sev('--oca', values.oca!),
      cek: sev('--cek', values.cek!),
      ...(values.ark !== undefined && values.ask !== undefined ? { ark: amd('--ark', values.ark), ask: amd('--ask', values.ask) } : {}),
    };
  }
  const extraRoots =
    values['root-ark'] !== undefined && values['root-ask'] !== undefined
      ? [{ ark: amd('--root-ark', values['root-ark']), ask: amd('--root-ask', values['root-ask']) }]
      : [];
  try {
    const v = verifyChain({ ...input, extraRoots, ...(generation ? { generation: generation as AmdGeneration } : {}) });
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
  try {
    mkdirSync(values.out, { recursive: true });
  } catch (e) {
    throw new UsageError(
      `--out: cannot create the directory '${values.out}' (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
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
  for (const [name, bytes] of Object.entries(files)) writeOutput('--out', join(values.out, name), bytes);
  if (values.json) console.log(toJson({ backend: host.name, out: values.out, files: Object.keys(files) }));
  else
    console.log(
      `wrote ${Object.keys(files).join(', ')} to ${values.out}${files['ark.cert'] ? " (ark/ask: the mock platform's root)" : ''}`,
    );
  return EXIT.OK;
}

/** `kvm-sev doctor`: what this host can do for SEV guests, and what to do about what it cannot. */
import { parseArgs } from 'node:util';
import { probeCapabilities } from '../../sev/capabilities.js';
import { BACKEND_HELP, BACKEND_OPTION, hostFrom } from './backend-option.js';
import { bold, dim, EXIT, mark, parseSize, toJson } from './output.js';

export const DOCTOR_HELP = `Usage: kvm-sev doctor [--backend native|hybrid|mock] [--guest-size BYTES|2G|512M] [--json]

Checks CPUID 0x8000001F (C-bit, ASIDs), kvm_amd's sev/sev_es/sev_snp parameters, the VM types the kernel
accepts and whether it has KVM_SEV_INIT2, RLIMIT_MEMLOCK against the guest you plan, and access to
/dev/kvm and /dev/sev. Each line says what it means and what to do.
Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed.
${BACKEND_HELP}`;

const size = (s: string | undefined): bigint | undefined => (s === undefined ? undefined : parseSize('guest-size', s));

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...BACKEND_OPTION, 'guest-size': { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(DOCTOR_HELP);
    return EXIT.OK;
  }
  const guestSize = size(values['guest-size']);
  const host = await hostFrom(values);
  const r = await probeCapabilities(host.backend, guestSize === undefined ? {} : { guestSize });
  const failed = r.lines.some((l) => l.status === 'fail');
  if (values.json) {
    console.log(toJson({ ...r, reason: host.reason }));
    return failed ? EXIT.FAILED : EXIT.OK;
  }
  console.log(`${bold(`backend: ${host.name}`)} ${dim(`(${host.reason})`)}`);
  for (const l of r.lines) {
    console.log(`${mark(l.status)} ${l.title.padEnd(24)} ${l.value}`);
    console.log(`     ${l.meaning}`);
    if (l.action) console.log(`     ${dim('→')} ${l.action}`);
  }
  console.log(
    `\nSEV ${r.sev ? 'yes' : 'no'}, SEV-ES ${r.sevEs ? 'yes' : 'no'}, SEV-SNP ${r.snp ? 'yes' : 'no'}, INIT2 ${r.init2 ? 'yes' : 'no'}`,
  );
  return failed ? EXIT.FAILED : EXIT.OK;
}

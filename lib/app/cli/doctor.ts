/**
 * `kvm-sev doctor`: what this host can do for SEV guests, and what to do about what it cannot.
 * The facts are always the host's own (its /proc, /sys, device nodes and KVM, through the native
 * backend); what a mock or hybrid backend would emulate is shown only on request, marked on every line.
 */
import { parseArgs } from 'node:util';
import type { Backend } from '../../backend/contract.js';
import { HostSystemView } from '../../backends/native/host-system-view.js';
import { NativeBackend } from '../../backends/native/native-backend.js';
import { checkRequirement, probeCapabilities, REQUIREMENTS, type CapabilityReport, type Requirement } from '../../sev/capabilities.js';
import { BACKEND_OPTION, hostFrom } from './backend-option.js';
import { bold, dim, EXIT, green, mark, parseSize, red, toJson, UsageError, yellow } from './output.js';

export const DOCTOR_HELP = `Usage: kvm-sev doctor [--require kvm|sev|sev-es|snp ...] [--guest-size SIZE] [--json]
                     [--backend mock|hybrid [--processor P]]

Reports what this host can do for SEV guests, from the host itself, whatever backend another command
would pick: the CPU and its flags (/proc/cpuinfo), which KVM this is (kvm_amd on bare metal, nested, or a
paravirtualised KVM such as kvm_pvm, whose instruction emulator limits what guests can run), access to
/dev/kvm, kvm_amd's sev/sev_es/sev_snp, CPUID 0x8000001F as KVM_GET_SUPPORTED_CPUID gives it, the VM types
and KVM_SEV_INIT2, RLIMIT_MEMLOCK against the guest you plan, and /dev/sev. Each line says what it means
and what to do.

  --require R    kvm, sev, sev-es or snp (repeat it, or separate with commas): exit 1 unless the host has it
  --guest-size   the guest memory you plan to pin: bytes or 64K, 512M, 2G, 1T (default 1G)
  --backend mock|hybrid   also show what that backend would emulate here, each line tagged [mock] or [hybrid]
  --processor naples|rome|milan|genoa   the processor the mock or hybrid emulates (default milan)
  --json         the same as a report: the host's facts, "requirements", and "emulated" with --backend
Exit status: 0 when the host has what --require names and no check failed, 1 otherwise, 2 a usage error.`;

/** The host, probed through the native backend; without the addon, the facts /proc, /sys and /dev give. */
async function probeHost(guestSize: bigint | undefined): Promise<CapabilityReport> {
  const opts = guestSize === undefined ? {} : { guestSize };
  let native: NativeBackend;
  try {
    native = new NativeBackend();
  } catch (e) {
    return probeCapabilities({ system: new HostSystemView(), unavailable: (e as Error).message }, opts);
  }
  return probeCapabilities(native, opts);
}

function requirementsFrom(list: readonly string[] | undefined): Requirement[] {
  const out: Requirement[] = [];
  for (const r of (list ?? []).flatMap((s) => s.split(',')).map((s) => s.trim())) {
    if (!(REQUIREMENTS as readonly string[]).includes(r))
      throw new UsageError(`--require takes ${REQUIREMENTS.join(', ')} (or several, comma-separated), got '${r}'`);
    if (!out.includes(r as Requirement)) out.push(r as Requirement);
  }
  return out;
}

interface Emulated {
  backend: 'mock' | 'hybrid';
  reason?: string;
  report?: CapabilityReport;
  error?: string;
}

async function emulate(values: { backend?: string | undefined; processor?: string | undefined }, guestSize: bigint | undefined) {
  const name = values.backend as 'mock' | 'hybrid';
  let backend: Backend;
  let reason: string;
  try {
    const host = await hostFrom(values);
    backend = host.backend;
    reason = host.reason;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    return { backend: name, error: (e as Error).message } satisfies Emulated;
  }
  const report = await probeCapabilities(backend, guestSize === undefined ? {} : { guestSize });
  return { backend: name, reason, report } satisfies Emulated;
}

/** The emulated report for --json: marked as a whole and on every line. */
function emulatedJson(e: Emulated): Record<string, unknown> {
  const note = `what the ${e.backend} backend would emulate here: mocked facts, not this host's`;
  if (!e.report) return { note, backend: e.backend, error: e.error };
  return { note, reason: e.reason, ...e.report, lines: e.report.lines.map((l) => ({ ...l, emulated: true })) };
}

const summary = (r: CapabilityReport): string =>
  `KVM ${r.kvm ? 'yes' : 'no'}, SEV ${r.sev && r.sevPlatform ? 'yes' : 'no'}, SEV-ES ${r.sevEs ? 'yes' : 'no'}, ` +
  `SEV-SNP ${r.snp ? 'yes' : 'no'}, INIT2 ${r.init2 ? 'yes' : 'no'}`;

function printLines(r: CapabilityReport, tag: string): void {
  const width = Math.max(24, ...r.lines.map((l) => tag.length + l.title.length));
  for (const l of r.lines) {
    console.log(`${mark(l.status)} ${(tag + l.title).padEnd(width)} ${l.value}`);
    console.log(`     ${l.meaning}`);
    if (l.action) console.log(`     ${dim('→')} ${l.action}`);
  }
}

export async function doctor(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...BACKEND_OPTION,
      require: { type: 'string', multiple: true },
      'guest-size': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(DOCTOR_HELP);
    return EXIT.OK;
  }
  const guestSize = values['guest-size'] === undefined ? undefined : parseSize('guest-size', values['guest-size']);
  const required = requirementsFrom(values.require);
  const b = values.backend;
  if (b !== undefined && b !== 'native' && b !== 'hybrid' && b !== 'mock')
    throw new UsageError(`--backend must be native, hybrid or mock, got '${b}'`);
  if (values.processor !== undefined && (b === undefined || b === 'native'))
    throw new UsageError('--processor chooses what the mock or hybrid emulates: give it with --backend mock or --backend hybrid');

  const host = await probeHost(guestSize);
  const requirements = Object.fromEntries(REQUIREMENTS.map((r) => [r, checkRequirement(host, r)])) as Record<
    Requirement,
    { met: boolean; why: string }
  >;
  const missing = required.filter((r) => !requirements[r].met);
  const failed = host.lines.some((l) => l.status === 'fail');
  const ok = missing.length === 0 && !failed;
  const emulated = b === 'mock' || b === 'hybrid' ? await emulate(values, guestSize) : undefined;

  if (values.json) {
    console.log(
      toJson({
        source: 'host',
        ...host,
        requirements,
        required,
        missing,
        ok,
        ...(emulated ? { emulated: emulatedJson(emulated) } : {}),
      }),
    );
    return ok ? EXIT.OK : EXIT.FAILED;
  }

  console.log(
    bold('this host') +
      dim(` (${host.backend === 'none' ? 'no native addon: facts of /proc, /sys and /dev only' : 'its own /proc, /sys, /dev and KVM'})`),
  );
  printLines(host, '');
  console.log(`\nthis host: ${summary(host)}`);
  for (const r of required) {
    const q = requirements[r];
    console.log(`${q.met ? green('has') : red('LACKS')} ${r} (--require): ${q.why}`);
  }
  if (!emulated && !requirements.sev.met) {
    const alt = requirements.kvm.met ? 'hybrid (real KVM, mocked SEV)' : 'mock (KVM and SEV modelled)';
    console.log(
      dim(
        `\nNo SEV here: the other commands pick the ${alt} backend; \`kvm-sev doctor --backend ${requirements.kvm.met ? 'hybrid' : 'mock'}\` shows what it emulates.`,
      ),
    );
  }
  if (emulated) {
    const tag = `[${emulated.backend}] `;
    console.log(`\n${bold(`emulated by the ${emulated.backend} backend`)} ${yellow("(mocked facts, not this host's)")}`);
    if (emulated.error) console.log(`${mark('fail')} ${tag}cannot run here: ${emulated.error}`);
    else if (emulated.report) {
      console.log(dim(`  ${emulated.reason ?? ''}`));
      printLines(emulated.report, tag);
      console.log(`\n${tag}emulates: ${summary(emulated.report)} (emulated, not this host)`);
    }
  }
  return ok ? EXIT.OK : EXIT.FAILED;
}

/** `kvm-sev demo`: the whole attested launch, one line per step with its time. */
import { parseArgs } from 'node:util';
import { mockBehind } from '../mock-behind.js';
import { runDemo, type DemoStep } from '../demo/attested-launch.js';
import { BACKEND_HELP, BACKEND_OPTION, hostFrom } from './backend-option.js';
import { writeOutput } from './files.js';
import { bold, dim, EXIT, green, parseSize, progressBar, red, toJson, UsageError, yellow } from './output.js';

export const DEMO_HELP = `Usage: kvm-sev demo [--backend native|hybrid|mock] [--guest-size 64K|256M|1G] [--json] [--trace FILE]

Runs an attested SEV launch end to end: the guest owner verifies the platform's certificate chain and
builds a session; the host launches the guest; the owner verifies the measurement and injects a
secret; the guest runs and prints a digest of the secret it read from its own memory; the host shows
that its view of the guest's private memory is ciphertext. Exit status 0 when every step passes.
${BACKEND_HELP}
  --guest-size  the guest's memory, all of it measured (default 64K; a progress bar shows on a terminal)
  --json        a machine-readable report
  --trace FILE  save the mocked kernel's ioctl trace (mock, hybrid) for \`kvm-sev trace FILE\``;

function jsonSafeEntry(e: unknown): unknown {
  return JSON.parse(toJson(e));
}

const TITLES: Record<string, string> = {
  platform: 'owner verifies the platform',
  session: 'owner builds a session',
  launch: 'host launches the guest',
  measure: 'owner verifies the measurement',
  secret: 'owner injects a secret',
  run: 'the guest runs',
  'host-view': 'host sees ciphertext',
};

export async function demo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...BACKEND_OPTION,
      json: { type: 'boolean' },
      trace: { type: 'string' },
      'guest-size': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(DEMO_HELP);
    return EXIT.OK;
  }
  const guestSize = values['guest-size'] ? Number(parseSize('guest-size', values['guest-size'])) : undefined;
  if (guestSize !== undefined && (guestSize < 0x10000 || guestSize % 0x10000 !== 0))
    throw new UsageError('--guest-size must be a multiple of 64K, at least 64K');
  const host = await hostFrom(values, { trace: values.trace !== undefined });
  if (!values.json) console.log(`${bold(`backend: ${host.name}`)} ${dim(`(${host.reason})`)}`);
  let n = 0;
  const print = (s: DemoStep) => {
    if (values.json) return;
    n++;
    const mark = s.skipped ? yellow('skip') : s.ok ? green(' ok ') : red('FAIL');
    console.log(`${mark} ${n}. ${TITLES[s.step]!.padEnd(32)} ${dim(`${s.ms.toFixed(1).padStart(7)} ms`)}  ${s.summary}`);
    if (s.error?.hint) console.log(`     hint: ${s.error.hint}`);
  };
  const bar = progressBar('measuring the guest');
  const report = await runDemo({
    backend: host.backend,
    onStep: (s) => {
      bar.done();
      print(s);
    },
    ...(guestSize !== undefined ? { guestSize } : {}),
    onProgress: (done, total) => bar.update(done, total),
  });
  if (values.trace) {
    const mock = mockBehind(host.backend);
    writeOutput('--trace', values.trace, mock ? JSON.stringify(mock.trace.entries.map((e) => jsonSafeEntry(e))) : '[]');
  }
  if (values.json) console.log(toJson({ ...report, reason: host.reason }));
  else console.log(report.ok ? green('attested launch complete') : red('the demo failed at the step above'));
  return report.ok ? EXIT.OK : EXIT.FAILED;
}

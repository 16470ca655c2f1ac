#!/usr/bin/env node
/** The `kvm-sev` command line: one file per command, dispatched here. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { certsExport, certsVerify, CERTS_HELP } from './certs.js';
import { demo, DEMO_HELP } from './demo.js';
import { doctor, DOCTOR_HELP } from './doctor.js';
import { status, STATUS_HELP } from './status.js';
import { trace, TRACE_HELP } from './trace.js';
import { hello, HELLO_HELP } from './hello.js';
import { pageMap, PAGE_MAP_HELP } from './page-map.js';
import { measure, MEASURE_HELP } from './measure.js';
import { secret, SECRET_HELP } from './secret.js';
import { migrate, MIGRATE_HELP, receive, RECEIVE_HELP } from './migrate.js';
import { EXIT, UsageError } from './output.js';

const USAGE = `Usage: kvm-sev <command> [options]   (kvm-sev <command> --help for each)

Commands:
  demo                  an attested SEV launch end to end (native, hybrid or mock backend)
  doctor                what this host can do for SEV guests, and what to do about the rest
  status                the SEV platform's status (/dev/sev)
  certs export|verify   export the platform's certificates; verify a chain against AMD's roots
  measure               the launch measurement a guest owner should expect
  secret                build a LAUNCH_SECRET packet for a measured guest
  trace                 decode a recorded ioctl trace of the mock backend
  hello                 boot a real-mode guest on /dev/kvm and print its serial output
  migrate               move a running SEV guest to another host (live migration), with a progress bar
  receive               receive a guest from \`kvm-sev migrate\` and run it on
  page-map              run a guest that reports its page states and show the VMM's page map

Options: --help, --version
Exit status: 0 success, 1 a failed check or step, 2 a usage error; 141 (as for SIGPIPE) when the reader
of the output went away, e.g. \`kvm-sev demo | head -3\`.`;

/** 128 + SIGPIPE: what a shell reports for a writer whose reader went away. */
const EXIT_PIPE = 141;

/** package.json's version (dist/lib/app/cli/main.js → the package root). */
function version(): string {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'package.json');
  const pkg = JSON.parse(readFileSync(file, 'utf8')) as { version: string };
  return pkg.version;
}

type Command = { run: (argv: string[]) => number | Promise<number>; help: string };

const COMMANDS: Record<string, Command> = {
  demo: { run: demo, help: DEMO_HELP },
  doctor: { run: doctor, help: DOCTOR_HELP },
  status: { run: status, help: STATUS_HELP },
  trace: { run: trace, help: TRACE_HELP },
  hello: { run: hello, help: HELLO_HELP },
  'page-map': { run: pageMap, help: PAGE_MAP_HELP },
  measure: { run: measure, help: MEASURE_HELP },
  secret: { run: secret, help: SECRET_HELP },
  migrate: { run: migrate, help: MIGRATE_HELP },
  receive: { run: receive, help: RECEIVE_HELP },
  certs: {
    help: CERTS_HELP,
    run: (argv) => {
      const [sub, ...rest] = argv;
      if (sub === 'verify') return certsVerify(rest);
      if (sub === 'export') return certsExport(rest);
      if (sub === '--help' || sub === '-h') {
        console.log(CERTS_HELP);
        return EXIT.OK;
      }
      if (sub === undefined) throw new UsageError('give a subcommand: export or verify');
      throw new UsageError(`unknown 'certs' subcommand '${sub}' (export or verify)`);
    },
  },
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help') {
    console.log(USAGE);
    return cmd ? EXIT.OK : EXIT.USAGE;
  }
  if (cmd === '--version' || cmd === '-V') {
    console.log(`kvm-sev ${version()}`);
    return EXIT.OK;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`kvm-sev: unknown command '${cmd}'\n\n${USAGE}`);
    return EXIT.USAGE;
  }
  try {
    return await c.run(rest);
  } catch (e) {
    const err = e as Error & { code?: string };
    if (
      e instanceof UsageError ||
      err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
      err.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
      err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
    ) {
      console.error(`kvm-sev ${cmd}: ${err.message}\n\n${c.help}`);
      return EXIT.USAGE;
    }
    throw e;
  }
}

// A reader that went away (`kvm-sev demo | head -3`) is not an error: stop quietly, as a process
// killed by SIGPIPE would (Node ignores SIGPIPE, so the write fails with EPIPE instead).
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT_PIPE);
    throw e;
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error & { code?: string; hint?: string }) => {
    console.error(`kvm-sev: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}`);
    process.exit(EXIT.FAILED);
  },
);

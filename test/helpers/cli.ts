/** Running the built `kvm-sev` CLI (dist/lib/app/cli/main.js) as a user would, without colour. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

/** dist/test/helpers/cli.js → the repository's root. */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const cliPath = join(repoRoot, 'dist/lib/app/cli/main.js');

export function runCli(args: readonly string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cliPath, ...args], {
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1', ...env },
    timeout: 120_000,
  });
}

/** What a library argument error looks like (Node's ERR_INVALID_ARG_* / ERR_OUT_OF_RANGE wording). */
const LIBRARY_WORDING = /The (argument|property|value of) |options\.|entries\[\]|Received /;

/**
 * A usage error: exit status 2, a message on stderr that matches each pattern (the flag, the file),
 * with the command's help, no library wording about internal parameters and no stack trace.
 */
export function assertUsageError(t: ExecutionContext, r: SpawnSyncReturns<string>, ...patterns: RegExp[]): void {
  t.is(r.status, 2, `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
  for (const p of patterns) t.regex(r.stderr, p);
  t.notRegex(r.stderr, LIBRARY_WORDING);
  t.notRegex(r.stderr, /\n\s+at /, 'no stack trace');
  t.regex(r.stderr, /Usage: kvm-sev /);
}

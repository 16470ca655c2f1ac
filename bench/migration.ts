/**
 * `npm run bench:migration`: host-to-host live migration between two processes (each its own hybrid
 * host), for guests of BENCH_SIZES MiB (default 256,1024), at two dirty rates (BENCH_DIRTY steps/s,
 * default 200,5000: the guest dirties one of 112 pages per step), with the source's mock PSP throttled
 * to BENCH_PSP commands/s (default 400,10000,0; 0 = unthrottled, i.e. as fast as the mock runs).
 * Reports total time, downtime, rounds, pages per kind and the measured PSP rate: medians and spread
 * (min–max) of BENCH_ROUNDS runs (default 3), in bench/out/migration.json and as a table.
 * The shared-page rows (BENCH_SHARED_MIB, default 255: a 256 MiB guest that shares all but its first
 * MiB, PSP unthrottled) compare the shared pages' rate with bench/socket-baseline.c, the same bytes
 * sent from one process to another over TCP loopback in C, run before each migration (interleaved).
 * A benchmark, not a test: the figures depend on the machine and its load.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const host = join(here, 'helpers', 'migration-host.js');
const outDir = join(here, '..', '..', 'bench', 'out');
const list = (name: string, dflt: string) => (process.env[name] ?? dflt).split(',').map(Number);
const SIZES = list('BENCH_SIZES', '256,1024').filter((n) => n > 0);
const DIRTY = list('BENCH_DIRTY', '200,5000');
const PSP = list('BENCH_PSP', '400,10000,0');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const DOWNTIME = Number(process.env['BENCH_DOWNTIME_MS'] ?? 300);
const TIME_LIMIT = Number(process.env['BENCH_TIME_LIMIT_MS'] ?? 1_800_000);
const SHARED_MIB = list('BENCH_SHARED_MIB', '255').filter((n) => n > 0);
const socketBaseline = join(outDir, 'socket-baseline');

function child(role: string, port: number, cfg: object): { out: Promise<Record<string, unknown>>; port: Promise<number> } {
  const p = spawn(process.execPath, ['--max-old-space-size=4096', host, role, String(port), JSON.stringify(cfg)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let onPort: (n: number) => void = () => {};
  const portP = new Promise<number>((r) => (onPort = r));
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => {
    stderr += d;
    const m = /LISTENING (\d+)/.exec(stderr);
    if (m) onPort(Number(m[1]));
  });
  const out = new Promise<Record<string, unknown>>((resolve, reject) =>
    p.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>)
        : reject(new Error(`${role} exited ${code}: ${stderr.slice(-2000)}`)),
    ),
  );
  return { out, port: portP };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;

const results: Record<string, unknown>[] = [];
for (const mib of SIZES)
  for (const psp of PSP)
    for (const dirty of DIRTY) {
      const runs: Record<string, number | string>[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const cfg = { memoryMiB: mib, pspRate: psp, stepsPerSecond: dirty, downtimeLimitMs: DOWNTIME, timeLimitMs: TIME_LIMIT };
        const target = child('target', 0, cfg);
        const source = child('source', await target.port, cfg);
        const s = await source.out;
        if (s['owner'] === 'target') await target.out;
        else await target.out.catch(() => undefined);
        runs.push({
          owner: String(s['owner']),
          totalS: Number(s['totalMs']) / 1000,
          downtimeMs: Number(s['downtimeMs']),
          rounds: Number(s['rounds']),
          privatePages: Number(s['privatePages']),
          sharedPages: Number(s['sharedPages']),
          pspRate: Number(s['pspRate']),
          throttle: Number(s['throttle']),
          ...(typeof s['reason'] === 'string' ? { reason: s['reason'] } : {}),
        });
        process.stderr.write(`${mib} MiB, PSP ${psp || 'unthrottled'}, dirty ${dirty}/s, run ${i + 1}: ${JSON.stringify(runs.at(-1))}\n`);
      }
      const ok = runs.filter((r) => r.owner === 'target');
      const col = (k: string) => ok.map((r) => Number(r[k]));
      results.push({
        memoryMiB: mib,
        psp: psp || 'unthrottled',
        dirtyStepsPerSecond: dirty,
        runs: runs.length,
        moved: ok.length,
        ...(ok.length
          ? {
              totalS: { median: median(col('totalS')), spread: spread(col('totalS')) },
              downtimeMs: { median: median(col('downtimeMs')), spread: spread(col('downtimeMs')) },
              rounds: { median: median(col('rounds')), spread: spread(col('rounds')) },
              privatePages: median(col('privatePages')),
              sharedPages: median(col('sharedPages')),
              pspPagesPerSecond: { median: median(col('pspRate')), spread: spread(col('pspRate')) },
              throttle: median(col('throttle')),
            }
          : {}),
        refusals: runs.filter((r) => r.owner !== 'target').map((r) => r.reason),
      });
    }

// Shared pages at socket speed: the guest shares all but its first MiB; each migration follows a C
// transfer of the same bytes over TCP loopback, so both see the same machine load.
mkdirSync(outDir, { recursive: true });
if (SHARED_MIB.length) execFileSync('cc', ['-O2', '-Wall', '-o', socketBaseline, join(here, '..', '..', 'bench', 'socket-baseline.c')]);
const sharedRows: Record<string, unknown>[] = [];
for (const sharedMiB of SHARED_MIB) {
  const mib = sharedMiB + 1;
  const c: number[] = [];
  const js: number[] = [];
  const ratio: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const cSeconds = Number(execFileSync(socketBaseline, [String(sharedMiB << 20)], { encoding: 'utf8' }).trim());
    const cfg = { memoryMiB: mib, pspRate: 0, stepsPerSecond: DIRTY[0], downtimeLimitMs: DOWNTIME, timeLimitMs: TIME_LIMIT, sharedMiB };
    const target = child('target', 0, cfg);
    const source = child('source', await target.port, cfg);
    const s = await source.out;
    await target.out;
    if (s['owner'] !== 'target') throw new Error(`the shared-page migration did not complete: ${String(s['reason'])}`);
    // The stream's shared-page rate (time in the source's writes, which wait while the socket is full).
    const mbps = (Number(s['sharedRate']) * 4096) / 1e6;
    const cMbps = (sharedMiB << 20) / 1e6 / cSeconds;
    c.push(cMbps);
    js.push(mbps);
    ratio.push(mbps / cMbps);
    process.stderr.write(`shared ${sharedMiB} MiB, run ${i + 1}: migration ${mbps.toFixed(0)} MB/s, C socket ${cMbps.toFixed(0)} MB/s\n`);
  }
  sharedRows.push({
    sharedMiB,
    rounds: ROUNDS,
    migrationMBps: { median: median(js), spread: spread(js) },
    socketMBps: { median: median(c), spread: spread(c) },
    ratio: { median: median(ratio), spread: spread(ratio.map((r) => r * 100)) + ' %' },
  });
}
results.push(...sharedRows.map((r) => ({ shared: r })));
writeFileSync(join(outDir, 'migration.json'), `${JSON.stringify(results, null, 2)}\n`);
console.table(
  results
    .filter((r) => !('shared' in r))
    .map((r) => {
      const g = (k: string) => r[k] as { median: number; spread: string } | undefined;
      return {
        MiB: r['memoryMiB'],
        PSP: r['psp'],
        'dirty/s': r['dirtyStepsPerSecond'],
        moved: `${String(r['moved'])}/${String(r['runs'])}`,
        'total s': g('totalS') ? `${g('totalS')!.median.toFixed(1)} (${g('totalS')!.spread})` : '-',
        'downtime ms': g('downtimeMs') ? `${g('downtimeMs')!.median.toFixed(0)} (${g('downtimeMs')!.spread})` : '-',
        rounds: g('rounds')?.median ?? '-',
        private: r['privatePages'] ?? '-',
        shared: r['sharedPages'] ?? '-',
        'PSP pages/s': g('pspPagesPerSecond') ? `${g('pspPagesPerSecond')!.median.toFixed(0)}` : '-',
      };
    }),
);
if (sharedRows.length)
  console.table(
    sharedRows.map((r) => {
      const g = (k: string) => r[k] as { median: number; spread: string };
      return {
        'shared MiB': r['sharedMiB'],
        rounds: r['rounds'],
        'migration MB/s': `${g('migrationMBps').median.toFixed(0)} (${g('migrationMBps').spread})`,
        'C socket MB/s': `${g('socketMBps').median.toFixed(0)} (${g('socketMBps').spread})`,
        'of socket speed': `${(g('ratio').median * 100).toFixed(0)} % (${g('ratio').spread})`,
      };
    }),
  );

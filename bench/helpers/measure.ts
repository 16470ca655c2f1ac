/**
 * What the bench scripts share: wall and CPU time of a round, the C baseline as a child process driven
 * round by round (so C and JS rounds interleave under the same machine load), order statistics, and the
 * one table each script prints.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** Wall and CPU (getrusage RUSAGE_SELF: user + system, every thread of the process) nanoseconds. */
export interface Sample {
  ns: number;
  cpuNs: number;
}

/** The quantile q (0..1) of xs, linearly interpolated. */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}
export const median = (xs: readonly number[]) => quantile(xs, 0.5);

/** Runs body once; wall and CPU time divided by ops. */
export async function measure(ops: number, body: () => void | Promise<void>): Promise<Sample> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await body();
  const ns = Number(process.hrtime.bigint() - t0);
  const c = process.cpuUsage(c0);
  return { ns: ns / ops, cpuNs: ((c.user + c.system) * 1000) / ops };
}

/** bench/baseline.c, compiled once and kept running: one command per round. */
export class CBaseline {
  private readonly p: ChildProcessWithoutNullStreams;
  private readonly lines: AsyncIterator<string>;

  constructor(root: string, outDir: string) {
    mkdirSync(outDir, { recursive: true });
    const exe = join(outDir, 'baseline');
    execFileSync('cc', ['-O2', '-Wall', '-pthread', '-o', exe, join(root, 'bench', 'baseline.c')], { stdio: 'inherit' });
    this.p = spawn(exe, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.p.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    this.lines = createInterface({ input: this.p.stdout })[Symbol.asyncIterator]();
  }

  /** One round of `cmd` (see baseline.c), per operation. */
  async run(cmd: string): Promise<Sample> {
    this.p.stdin.write(cmd + '\n');
    const r = await this.lines.next();
    if (r.done) throw new Error(`the C baseline exited during "${cmd}"`);
    return JSON.parse(r.value) as Sample;
  }

  close(): void {
    this.p.stdin.end();
  }
}

/** A row: per-round pairs (C then JS, interleaved), ratios per round. */
export interface Row {
  name: string;
  c: Sample[];
  js: Sample[];
  /** The target for the wall and the CPU ratio (kvm-sev / C), or undefined for a row that only informs. */
  target?: number;
  /** 'max': the ratio must be at most target; 'min': at least (rates, speed-ups). */
  sense?: 'max' | 'min';
  /** How to print a value: time per op (default), or a rate/bytes formatter. */
  unit?: (ns: number) => string;
  /** Which ratios the target applies to (default both wall and CPU). */
  targetOn?: 'wall' | 'both';
  note?: string;
}

export const fmtTime = (ns: number) =>
  ns >= 1e9
    ? `${(ns / 1e9).toFixed(2)} s`
    : ns >= 1e6
      ? `${(ns / 1e6).toFixed(2)} ms`
      : ns >= 1e3
        ? `${(ns / 1e3).toFixed(2)} µs`
        : `${ns.toFixed(0)} ns`;

export interface RowSummary {
  name: string;
  cNs: number;
  jsNs: number;
  cCpuNs: number;
  jsCpuNs: number;
  /** Medians of the per-round ratios, and their p10..p90. */
  wall: { median: number; p10: number; p90: number };
  cpu: { median: number; p10: number; p90: number };
  target?: number;
  sense: 'max' | 'min';
  met?: boolean;
  note?: string;
}

function ratios(num: readonly number[], den: readonly number[]) {
  const r = num.map((x, i) => x / den[i]!);
  return { median: median(r), p10: quantile(r, 0.1), p90: quantile(r, 0.9) };
}

export function summarize(row: Row): RowSummary {
  const sense = row.sense ?? 'max';
  const wall = ratios(
    row.js.map((s) => s.ns),
    row.c.map((s) => s.ns),
  );
  const cpu = ratios(
    row.js.map((s) => s.cpuNs),
    row.c.map((s) => s.cpuNs),
  );
  const ok = (x: number) => (row.target === undefined ? true : sense === 'max' ? x <= row.target : x >= row.target);
  const s: RowSummary = {
    name: row.name,
    cNs: median(row.c.map((x) => x.ns)),
    jsNs: median(row.js.map((x) => x.ns)),
    cCpuNs: median(row.c.map((x) => x.cpuNs)),
    jsCpuNs: median(row.js.map((x) => x.cpuNs)),
    wall,
    cpu,
    sense,
  };
  if (row.target !== undefined) {
    s.target = row.target;
    s.met = ok(wall.median) && (row.targetOn === 'wall' || ok(cpu.median));
  }
  if (row.note) s.note = row.note;
  return s;
}

/** The one table a bench script prints (also as Markdown for the README). */
export function printTable(title: string, rows: readonly Row[], rounds: number, base = 'C', subject = 'kvm-sev'): RowSummary[] {
  const sums = rows.map(summarize);
  const r2 = (x: number) => x.toFixed(2);
  console.log(`\n${title}: ${rounds} rounds, ${base} and ${subject} interleaved round by round; node ${process.version}\n`);
  console.log(
    `| benchmark | ${base} wall | ${subject} wall | wall ratio (p10–p90) | ${base} CPU | ${subject} CPU | CPU ratio (p10–p90) | target |`,
  );
  console.log('|---|---|---|---|---|---|---|---|');
  rows.forEach((row, i) => {
    const s = sums[i]!;
    const f = row.unit ?? fmtTime;
    const tgt =
      s.target === undefined
        ? ''
        : `${s.sense === 'max' ? '<=' : '>='} ${s.target}x${row.targetOn === 'wall' ? ' (wall)' : ''}, ${s.met ? 'met' : 'MISSED'}`;
    console.log(
      `| ${s.name} | ${f(s.cNs)} | ${f(s.jsNs)} | ${r2(s.wall.median)}x (${r2(s.wall.p10)}–${r2(s.wall.p90)}) | ` +
        `${f(s.cCpuNs)} | ${f(s.jsCpuNs)} | ${r2(s.cpu.median)}x (${r2(s.cpu.p10)}–${r2(s.cpu.p90)}) | ${tgt}${s.note ? ` ${s.note}` : ''} |`,
    );
  });
  return sums;
}

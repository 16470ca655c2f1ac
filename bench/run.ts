/**
 * `npm run bench`: kvm-sev against C doing the same work, in the same process tree. It compiles
 * bench/baseline.c, runs it, runs the TypeScript equivalents, and prints medians and ratios.
 * Results go to stdout and to bench/out/results.json.
 *
 * Targets (issue #2): trivial ioctl <= 1.3x C; port-I/O exit round trip runSync() <= 1.15x and
 * run() <= 2x; create VM + memory + vCPU + run to the first exit <= 1.2x.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Asm16 } from '../lib/app/guest/asm16.js';
import { setupRealMode } from '../lib/app/guest/setup.js';
import { Kvm } from '../lib/kvm/kvm.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import * as ioc from '../lib/uapi/ioctls.js';
import { KVM_CAP } from '../lib/uapi/constants.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = join(root, 'bench', 'out');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

function buildBaseline(): string {
  mkdirSync(outDir, { recursive: true });
  const exe = join(outDir, 'baseline');
  execFileSync('cc', ['-O2', '-Wall', '-o', exe, join(root, 'bench', 'baseline.c')], { stdio: 'inherit' });
  return exe;
}

function c(exe: string, what: string, n: number): number[] {
  const out = execFileSync(exe, [what, String(n), String(ROUNDS)], { encoding: 'utf8' });
  return (JSON.parse(out) as { nsPerOp: number[] }).nsPerOp;
}

function rounds(f: () => number): number[] {
  const r: number[] = [];
  for (let i = 0; i < ROUNDS; i++) r.push(f());
  return r;
}

function timeIt(n: number, body: () => void): number {
  const t0 = process.hrtime.bigint();
  body();
  return Number(process.hrtime.bigint() - t0) / n;
}

// again: out dx, al; inc al; jmp again (DX = 0x80): the same bytes as baseline.c's LOOP
const loop = new Asm16(0x1000).movImm16('dx', 0x80).movImm8('al', 0).label('again').outDxAl().incAl().jmp('again').assemble();
// out 0x80 once, then hlt: baseline.c's FIRST_EXIT
const firstExit = new Asm16(0x1000).movImm16('dx', 0x80).outDxAl().hlt().assemble();

function bootVm(kvm: Kvm, code: Uint8Array) {
  const vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  mem.write(0x1000n, code);
  setupRealMode(vcpu, 0x1000);
  return { vm, vcpu };
}

interface Row {
  name: string;
  cNs: number;
  jsNs: number;
  ratio: number;
  target: number;
}

async function main(): Promise<void> {
  const exe = buildBaseline();
  const backend = new NativeBackend();
  const kvm = Kvm.open({ backend });
  const rows: Row[] = [];
  const add = (name: string, cs: number[], js: number[], target: number) => {
    const cNs = median(cs);
    const jsNs = median(js);
    rows.push({ name, cNs, jsNs, ratio: jsNs / cNs, target });
  };

  // 1. A trivial ioctl.
  const N1 = 200_000;
  const cIoctl = c(exe, 'ioctl', N1);
  const fd = kvm.fd;
  for (let i = 0; i < 20_000; i++) backend.ioctl(fd, ioc.KVM_CHECK_EXTENSION, KVM_CAP.USER_MEMORY);
  add(
    'KVM_CHECK_EXTENSION via the backend',
    cIoctl,
    rounds(() =>
      timeIt(N1, () => {
        for (let i = 0; i < N1; i++) backend.ioctl(fd, ioc.KVM_CHECK_EXTENSION, KVM_CAP.USER_MEMORY);
      }),
    ),
    1.3,
  );
  add(
    'KVM_CHECK_EXTENSION via Kvm.checkExtension()',
    cIoctl,
    rounds(() =>
      timeIt(N1, () => {
        for (let i = 0; i < N1; i++) kvm.checkExtension(KVM_CAP.USER_MEMORY);
      }),
    ),
    1.3,
  );

  // 2. A port-I/O exit round trip, the exit decoded and handled in JS.
  const N2 = 20_000;
  const cExit = c(exe, 'exit', N2);
  {
    const { vm, vcpu } = bootVm(kvm, loop);
    let sink = 0;
    const once = () => {
      const e = vcpu.runSync();
      if (e.reason !== 'io' || e.port !== 0x80) throw new Error(`unexpected exit ${e.reason}`);
      sink += e.data[0]!;
    };
    for (let i = 0; i < 1000; i++) once();
    add(
      'port-I/O exit round trip, runSync()',
      cExit,
      rounds(() =>
        timeIt(N2, () => {
          for (let i = 0; i < N2; i++) once();
        }),
      ),
      1.15,
    );
    const asyncRounds: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N2; i++) {
        const e = await vcpu.run();
        if (e.reason !== 'io' || e.port !== 0x80) throw new Error(`unexpected exit ${e.reason}`);
        sink += e.data[0]!;
      }
      asyncRounds.push(Number(process.hrtime.bigint() - t0) / N2);
    }
    add('port-I/O exit round trip, await run()', cExit, asyncRounds, 2);
    vm.close();
    if (sink < 0) console.log(sink);
  }

  // 3. Create VM + memory + vCPU, run to the first exit, close.
  const N3 = 300;
  const cLife = c(exe, 'lifecycle', N3);
  const lifecycle = () => {
    const { vm, vcpu } = bootVm(kvm, firstExit);
    const e = vcpu.runSync();
    if (e.reason !== 'io') throw new Error(`unexpected exit ${e.reason}`);
    vm.close();
  };
  for (let i = 0; i < 20; i++) lifecycle();
  add(
    'create VM + memory + vCPU, run to first exit, close',
    cLife,
    rounds(() =>
      timeIt(N3, () => {
        for (let i = 0; i < N3; i++) lifecycle();
      }),
    ),
    1.2,
  );
  kvm.close();

  const fmt = (ns: number) =>
    ns >= 1e6 ? `${(ns / 1e6).toFixed(2)} ms` : ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
  console.log(`\nkvm-sev benchmarks: medians of ${ROUNDS} rounds, node ${process.version}, ${process.arch}\n`);
  console.log(`${'benchmark'.padEnd(54)} ${'C'.padStart(10)} ${'kvm-sev'.padStart(10)} ${'ratio'.padStart(7)} target`);
  for (const r of rows) {
    const ok = r.ratio <= r.target ? 'met' : 'MISSED';
    console.log(
      `${r.name.padEnd(54)} ${fmt(r.cNs).padStart(10)} ${fmt(r.jsNs).padStart(10)} ${r.ratio.toFixed(2).padStart(6)}x <= ${r.target}x ${ok}`,
    );
  }
  writeFileSync(
    join(outDir, 'results.json'),
    JSON.stringify({ date: new Date().toISOString(), node: process.version, rounds: ROUNDS, rows }, null, 2),
  );
}

await main();

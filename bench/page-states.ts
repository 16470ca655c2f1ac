/**
 * `npm run bench:page-states`: what one guest page-state request costs the VMM, against the port-I/O
 * exit every VMM already pays. Rounds are interleaved (each round runs every variant once), C baselines
 * (bench/page-states-baseline.c) run the same guest bytes on the same ioctls.
 *
 * Variants:
 * - port-I/O exit round trip: KVM_RUN to an OUT, the exit decoded in JS (C: the same ioctls);
 * - hypercall exit round trip through the hybrid's EMULATED doorbell, with the page-state tracker:
 *   on this host a VMMCALL never returns from KVM_RUN, so KVM_EXIT_HYPERCALL is built from the OUT
 *   exit (KVM_GET_REGS), answered by the tracker, and completed with an immediate_exit KVM_RUN and
 *   KVM_GET_REGS/KVM_SET_REGS (C: the same five ioctls, with the same range checks and no tracker);
 * - the same doorbell with a bare answer (no tracker): the emulation's cost alone;
 * - the JS handler alone (decode, checks, tracker update, settle) on a synthetic exit: what a real
 *   KVM_EXIT_HYPERCALL adds to a port-I/O-like exit on a host whose KVM returns it.
 * Results: stdout and bench/out/page-states.json.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Asm16 } from '../lib/app/guest/asm16.js';
import { setupRealMode } from '../lib/app/guest/setup.js';
import { HYPERCALL_DOORBELL_PORT } from '../lib/app/guest/vmm-programs.js';
import { HybridBackend } from '../lib/backends/hybrid/hybrid-backend.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import type { Backend } from '../lib/backend/contract.js';
import type { VcpuExit } from '../lib/kvm/exits.js';
import { Kvm } from '../lib/kvm/kvm.js';
import { handleMapGpaRange } from '../lib/sev/page-states/map-gpa-range.js';
import { PageStateExits } from '../lib/sev/page-states/page-state-exits.js';
import { PageStateTracker } from '../lib/sev/page-states/page-state-tracker.js';
import { KVM_HC_MAP_GPA_RANGE } from '../lib/uapi/constants.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = join(root, 'bench', 'out');
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const N_EXIT = Number(process.env['BENCH_EXITS'] ?? 20_000);
const N_HANDLER = 200_000;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// again: out dx, al; inc al; jmp again (DX = 0x80): bench/run.ts's loop
const pioLoop = new Asm16(0x1000).movImm16('dx', 0x80).movImm8('al', 0).label('again').outDxAl().incAl().jmp('again').assemble();
// The guest's KVM_HC_MAP_GPA_RANGE of page 8, shared and private in turn, through the doorbell.
const doorbellLoop = (() => {
  const a = new Asm16(0x1000);
  a.xor('edx', 'edx').label('again').mov('eax', KVM_HC_MAP_GPA_RANGE).mov('ebx', 0x8000).mov('ecx', 1);
  a.out(HYPERCALL_DOORBELL_PORT, 'al').xor('edx', 0x10).jmp('again');
  return a.assemble();
})();

function buildBaseline(): string {
  mkdirSync(outDir, { recursive: true });
  const exe = join(outDir, 'page-states-baseline');
  execFileSync('cc', ['-O2', '-Wall', '-o', exe, join(root, 'bench', 'page-states-baseline.c')], { stdio: 'inherit' });
  return exe;
}
const c = (exe: string, what: string, code: Uint8Array) =>
  (JSON.parse(execFileSync(exe, [what, String(N_EXIT), hex(code)], { encoding: 'utf8' })) as { nsPerOp: number }).nsPerOp;

function boot(backend: Backend, code: Uint8Array) {
  const kvm = Kvm.open({ backend });
  const vm = kvm.createVm();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  const vcpu = vm.createVcpu(0);
  mem.write(0x1000n, code);
  setupRealMode(vcpu, 0x1000);
  return { kvm, vm, vcpu, close: () => (vm.close(), kvm.close()) };
}

function timeIt(n: number, body: () => void): number {
  const t0 = process.hrtime.bigint();
  body();
  return Number(process.hrtime.bigint() - t0) / n;
}

function main(): void {
  const exe = buildBaseline();
  const results: Record<string, number[]> = {};
  const push = (k: string, v: number) => (results[k] ??= []).push(v);

  const pio = boot(new NativeBackend(), pioLoop);
  const withTracker = boot(new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } }), doorbellLoop);
  const tracker = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x10000 }] });
  tracker.vmEvent('LAUNCH_START'); // the tracker is told the guest runs; no SEV context is needed to time the exits
  tracker.vmEvent('LAUNCH_FINISH');
  const exits = PageStateExits.attach(withTracker.vm, tracker);
  let changes = 0;
  tracker.onChange(() => changes++);
  const bare = boot(new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } }), doorbellLoop);
  bare.vm.enableHypercallExit(1n << BigInt(KVM_HC_MAP_GPA_RANGE));

  let sink = 0;
  const pioOnce = () => {
    const e = pio.vcpu.runSync();
    if (e.reason !== 'io' || e.port !== 0x80) throw new Error(`unexpected exit ${e.reason}`);
    sink += e.data[0]!;
  };
  const trackedOnce = () => {
    const e = withTracker.vcpu.runSync();
    tracker.settle(0);
    if (!exits.handle(withTracker.vcpu, e)) throw new Error(`unexpected exit ${e.reason}`);
  };
  const bareOnce = () => {
    const e = bare.vcpu.runSync();
    if (e.reason !== 'hypercall') throw new Error(`unexpected exit ${e.reason}`);
    e.reply(0n);
  };
  const handlerTracker = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x10000 }] });
  handlerTracker.vmEvent('LAUNCH_START');
  handlerTracker.vmEvent('LAUNCH_FINISH');
  const synthetic = (attrs: bigint): VcpuExit => ({
    reason: 'hypercall',
    nr: 12n,
    args: [0x8000n, 1n, attrs, 0n, 0n, 0n],
    flags: 0n,
    reply: () => {},
  });
  const exitsByAttrs = [synthetic(0n), synthetic(0x10n)];
  const handlerOnce = (i: number) => {
    handleMapGpaRange(handlerTracker, 0, exitsByAttrs[i & 1]!);
    handlerTracker.settle(0);
  };
  for (let i = 0; i < 1000; i++) {
    pioOnce();
    trackedOnce();
    bareOnce();
    handlerOnce(i);
  }

  for (let r = 0; r < ROUNDS; r++) {
    push('C: port-I/O exit', c(exe, 'pio', pioLoop));
    push('JS: port-I/O exit, runSync()', timeIt(N_EXIT, () => { for (let i = 0; i < N_EXIT; i++) pioOnce(); })); // prettier-ignore
    push('C: doorbell hypercall (5 ioctls)', c(exe, 'doorbell', doorbellLoop));
    push('JS: doorbell hypercall + tracker, runSync()', timeIt(N_EXIT, () => { for (let i = 0; i < N_EXIT; i++) trackedOnce(); })); // prettier-ignore
    push('JS: doorbell hypercall, bare reply', timeIt(N_EXIT, () => { for (let i = 0; i < N_EXIT; i++) bareOnce(); })); // prettier-ignore
    push('JS: hypercall handler + tracker alone', timeIt(N_HANDLER, () => { for (let i = 0; i < N_HANDLER; i++) handlerOnce(i); })); // prettier-ignore
  }
  pio.close();
  withTracker.close();
  bare.close();

  const fmt = (ns: number) => (ns >= 1e3 ? `${(ns / 1e3).toFixed(2)} µs` : `${ns.toFixed(0)} ns`);
  const med = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
  console.log(`\npage-state request costs: medians of ${ROUNDS} interleaved rounds, node ${process.version}, ${process.arch}\n`);
  for (const [k, v] of Object.entries(med))
    console.log(`${k.padEnd(46)} ${fmt(v).padStart(10)}   rounds: ${results[k]!.map((x) => x.toFixed(0)).join(' ')}`);
  const pioJs = med['JS: port-I/O exit, runSync()']!;
  const derived = {
    'a hypercall exit handled in JS, on a host whose KVM returns it (port-I/O exit + handler)':
      pioJs + med['JS: hypercall handler + tracker alone']!,
    'ratio to the port-I/O exit': (pioJs + med['JS: hypercall handler + tracker alone']!) / pioJs,
    'doorbell + tracker / C doorbell': med['JS: doorbell hypercall + tracker, runSync()']! / med['C: doorbell hypercall (5 ioctls)']!,
    'doorbell + tracker / JS port-I/O exit': med['JS: doorbell hypercall + tracker, runSync()']! / pioJs,
  };
  console.log('');
  for (const [k, v] of Object.entries(derived)) console.log(`${k.padEnd(90)} ${k.startsWith('a ') ? fmt(v) : `${v.toFixed(2)}x`}`);
  if (sink < 0 || changes < 0) console.log(sink, changes);
  writeFileSync(
    join(outDir, 'page-states.json'),
    JSON.stringify(
      { date: new Date().toISOString(), node: process.version, rounds: ROUNDS, exits: N_EXIT, results, medians: med, derived },
      null,
      2,
    ),
  );
}

main();

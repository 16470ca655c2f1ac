/**
 * `npm run bench:mock`: the mock firmware's throughput against raw node:crypto on the same buffer, and
 * the memory a large mock launch needs. BENCH_ROUNDS (default 7) rounds, the raw and the mock side
 * interleaved; wall and CPU time; the raw side runs the same 4 MiB chunks the mock's cipher does.
 * Targets (issue #3): LAUNCH_UPDATE_DATA >= 0.5x raw AES-128 (it also measures: against raw SHA-256 +
 * AES it is reported without a target); a 1 GiB mock launch copies its memory at most once; the
 * throttle gives a realistic PSP rate. (The launch digest row is gone: LaunchDigest is createHash
 * itself, so the row could not fail.)
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Kvm } from '../lib/kvm/kvm.js';
import { MockHost } from '../lib/backends/mock/mock-host.js';
import { SevLaunch } from '../lib/sev/launch.js';
import { SevPlatform } from '../lib/sev/platform.js';
import { KVM_X86_SEV_VM } from '../lib/uapi/constants.js';
import { measure, median, printTable, type Row, type Sample } from './helpers/measure.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 7);
const SIZE = 256 << 20;

/** The LAUNCH_UPDATE_DATA of a mock launch of `size` bytes: wall and CPU nanoseconds. */
async function launchOnce(size: number, throttle?: number, beforeLaunch?: () => void): Promise<Sample> {
  const host = new MockHost(throttle ? { throttle: { bytesPerSecond: throttle } } : {});
  using kvm = Kvm.open({ backend: host });
  using platform = SevPlatform.open(host);
  const vm = kvm.createVm(KVM_X86_SEV_VM);
  const mem = vm.addMemory({ guestPhysAddr: 0n, size });
  for (let off = 0; off < size; off += 1 << 24) mem.write(BigInt(off), randomBytes(Math.min(1 << 24, size - off)));
  const guest = await SevLaunch.init(vm, { platform });
  const l = await guest.launchStart({ policy: 0 });
  beforeLaunch?.();
  const s = await measure(1, async () => {
    await l.launchUpdateData(mem, { chunkSize: size });
  });
  l.close();
  return s;
}

async function main(): Promise<void> {
  if (process.argv[2] === 'peak') {
    // Child: a 1 GiB guest measured in ONE LAUNCH_UPDATE_DATA (the worst case); the peak RSS during
    // the launch above the RSS just before it says how many copies of the memory the launch made.
    const fs = await import('node:fs');
    const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(fs.readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
    let before = 0;
    await launchOnce(1 << 30, undefined, () => {
      before = kb('VmRSS');
      fs.writeFileSync('/proc/self/clear_refs', '5'); // reset VmHWM to the current RSS
    });
    console.log(JSON.stringify({ before, peak: kb('VmHWM') }));
    return;
  }
  const buf = randomBytes(SIZE);
  const key = randomBytes(16);
  // The same 4 MiB chunks of one cipher context that the mock's memory cipher uses
  // (lib/backends/mock/psp/memory-cipher.ts), written back in place.
  const CHUNK = 4 << 20;
  const aes = () => {
    const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    for (let at = 0; at < SIZE; at += CHUNK) buf.set(c.update(buf.subarray(at, at + CHUNK)), at);
  };
  // What LAUNCH_UPDATE_DATA does to the bytes: measure (SHA-256), then encrypt in place.
  const aesSha = () => {
    const h = createHash('sha256');
    for (let at = 0; at < SIZE; at += CHUNK) h.update(buf.subarray(at, at + CHUNK));
    h.digest();
    aes();
  };
  const vsAes: Row = {
    name: 'mock LAUNCH_UPDATE_DATA against raw AES-128-CTR (same chunks)',
    c: [],
    js: [],
    target: 2,
    targetOn: 'wall',
    note: '(time ratio; = >= 0.5x the throughput)',
  };
  const vsAesSha: Row = { name: 'mock LAUNCH_UPDATE_DATA against raw SHA-256 + AES-128-CTR (same chunks)', c: [], js: [] };
  for (let i = 0; i < ROUNDS; i++) {
    const a = await measure(1, aes);
    const as = await measure(1, aesSha);
    const u = await launchOnce(SIZE);
    vsAes.c.push(a);
    vsAes.js.push(u);
    vsAesSha.c.push(as);
    vsAesSha.js.push(u);
  }
  printTable('mock firmware benchmarks', [vsAes, vsAesSha], ROUNDS, 'raw node:crypto', 'mock');
  const gb = (ns: number) => `${(SIZE / ns).toFixed(2)} GB/s`;
  console.log(
    `\nthroughput (medians): raw AES ${gb(median(vsAes.c.map((x) => x.ns)))}, raw SHA-256 + AES ${gb(median(vsAesSha.c.map((x) => x.ns)))}, ` +
      `mock LAUNCH_UPDATE_DATA ${gb(median(vsAes.js.map((x) => x.ns)))}`,
  );
  const child = JSON.parse(
    execFileSync(process.execPath, ['--max-old-space-size=4096', fileURLToPath(import.meta.url), 'peak'], { encoding: 'utf8' }),
  ) as { before: number; peak: number };
  const copies = (child.peak - child.before) / 2 ** 30;
  console.log(
    `1 GiB mock launch          peak memory during LAUNCH_UPDATE_DATA: +${copies.toFixed(2)} GiB over the ${(child.before / 2 ** 30).toFixed(2)} GiB before it = ${copies.toFixed(2)} copies of the guest (target <= 1)`,
  );
  const rate = 8 << 20;
  const thr = (await launchOnce(16 << 20, rate)).ns / 1e6;
  console.log(`throttled PSP (8 MB/s)     16 MiB in ${(thr / 1000).toFixed(2)} s = ${((16 << 20) / 1e6 / (thr / 1000)).toFixed(1)} MB/s`);
}

await main();

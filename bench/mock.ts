/**
 * `npm run bench:mock`: the mock firmware's throughput against raw node:crypto on the same buffer, and
 * the memory a large mock launch needs. Medians of BENCH_ROUNDS (default 5).
 * Targets (issue #3): LAUNCH_UPDATE_DATA >= 0.5x raw AES-128; the launch digest >= 0.8x raw SHA-256;
 * a 1 GiB mock launch copies its memory at most once; the throttle gives a realistic PSP rate.
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Kvm } from '../lib/kvm/kvm.js';
import { MockHost } from '../lib/backends/mock/mock-host.js';
import { LaunchDigest } from '../lib/crypto/measurement.js';
import { SevLaunch } from '../lib/sev/launch.js';
import { SevPlatform } from '../lib/sev/platform.js';
import { KVM_X86_SEV_VM } from '../lib/uapi/constants.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const SIZE = 256 << 20;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const gbps = (bytes: number, ms: number) => bytes / 1e9 / (ms / 1000);

async function launchOnce(size: number, throttle?: number, beforeLaunch?: () => void): Promise<number> {
  const host = new MockHost(throttle ? { throttle: { bytesPerSecond: throttle } } : {});
  using kvm = Kvm.open({ backend: host });
  using platform = SevPlatform.open(host);
  const vm = kvm.createVm(KVM_X86_SEV_VM);
  const mem = vm.addMemory({ guestPhysAddr: 0n, size });
  for (let off = 0; off < size; off += 1 << 24) mem.write(BigInt(off), randomBytes(Math.min(1 << 24, size - off)));
  const guest = await SevLaunch.init(vm, { platform });
  const l = await guest.launchStart({ policy: 0 });
  beforeLaunch?.();
  const t0 = performance.now();
  await l.launchUpdateData(mem, { chunkSize: size });
  const ms = performance.now() - t0;
  l.close();
  return ms;
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
  const raw = (f: () => void) => {
    const r: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const t0 = performance.now();
      f();
      r.push(performance.now() - t0);
    }
    return median(r);
  };
  const aes = raw(() => createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(buf));
  const sha = raw(() => createHash('sha256').update(buf).digest());
  const digest = raw(() => new LaunchDigest().update(buf).digest());
  const upd: number[] = [];
  for (let i = 0; i < ROUNDS; i++) upd.push(await launchOnce(SIZE));
  const update = median(upd);
  console.log(`mock benchmarks: ${SIZE >> 20} MiB, medians of ${ROUNDS} rounds\n`);
  console.log(`raw AES-128-CTR            ${gbps(SIZE, aes).toFixed(2)} GB/s`);
  console.log(`raw SHA-256                ${gbps(SIZE, sha).toFixed(2)} GB/s`);
  console.log(
    `LAUNCH_UPDATE_DATA (mock)  ${gbps(SIZE, update).toFixed(2)} GB/s  = ${(aes / update).toFixed(2)}x raw AES (target >= 0.5x; it also hashes: vs AES+SHA ${((aes + sha) / update).toFixed(2)}x)`,
  );
  console.log(
    `launch digest              ${gbps(SIZE, digest).toFixed(2)} GB/s  = ${(sha / digest).toFixed(2)}x raw SHA-256 (target >= 0.8x)`,
  );
  const child = JSON.parse(
    execFileSync(process.execPath, ['--max-old-space-size=4096', fileURLToPath(import.meta.url), 'peak'], { encoding: 'utf8' }),
  ) as { before: number; peak: number };
  const copies = (child.peak - child.before) / 2 ** 30;
  console.log(
    `1 GiB mock launch          peak memory during LAUNCH_UPDATE_DATA: +${copies.toFixed(2)} GiB over the ${(child.before / 2 ** 30).toFixed(2)} GiB before it = ${copies.toFixed(2)} copies of the guest (target <= 1)`,
  );
  const rate = 8 << 20;
  const thr = await launchOnce(16 << 20, rate);
  console.log(`throttled PSP (8 MB/s)     16 MiB in ${(thr / 1000).toFixed(2)} s = ${((16 << 20) / 1e6 / (thr / 1000)).toFixed(1)} MB/s`);
}

await main();

/**
 * One host of `npm run bench:migration` (`node migration-host.js <role> <port> <config-json>`): its own
 * hybrid backend (real KVM, its own mock firmware), optionally with the PSP throttled to a command
 * rate. The target prints `LISTENING <port>` on stderr; each prints its figures as JSON on stdout.
 */
import { Kvm, SevPlatform } from '../../lib/index.js';
import { HybridBackend } from '../../lib/backends/hybrid/index.js';
import { mockAmdRoots } from '../../lib/backends/mock/index.js';
import { DemoVmm, setUpExits } from '../../lib/app/migration/demo-vmm.js';
import { HYPERCALL_DOORBELL_PORT } from '../../lib/app/guest/vmm-programs.js';
import { migrate } from '../../lib/migration/live/source.js';
import { receive } from '../../lib/migration/live/target.js';
import { amdCertsBytes } from '../../lib/migration/live/target-check.js';

interface Config {
  memoryMiB: number;
  /** PSP commands per second (0: unthrottled). */
  pspRate: number;
  /** Guest steps (dirtied pages) per second. */
  stepsPerSecond: number;
  downtimeLimitMs: number;
  timeLimitMs: number;
  /** MiB the guest makes shared at start, from 1 MiB up (0: the demo's 4 pages). */
  sharedMiB?: number;
}

const [role, portArg, cfgArg] = process.argv.slice(2);
const cfg = JSON.parse(cfgArg!) as Config;
const backend = new HybridBackend({
  emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT },
  ...(cfg.pspRate > 0 && role === 'source' ? { throttle: { commandsPerSecond: cfg.pspRate } } : {}),
});
using kvm = Kvm.open({ backend });
using platform = SevPlatform.open(backend);
const roots = mockAmdRoots();

if (role === 'target') {
  const got = await receive({
    from: { port: Number(portArg) },
    kvm,
    platform,
    amdCerts: amdCertsBytes(roots[1]!),
    setup: setUpExits,
    recordTimeoutMs: 600_000,
    onListening: (a) => process.stderr.write(`LISTENING ${typeof a === 'string' ? a : a.port}\n`),
  });
  const vmm = DemoVmm.adopt(got, platform);
  await vmm.waitSteps(10);
  process.stdout.write(`${JSON.stringify({ received: true, first: vmm.steps[0] })}\n`);
  await vmm.close();
} else {
  const vmm = await DemoVmm.launch({
    kvm,
    platform,
    memorySize: cfg.memoryMiB << 20,
    doorbell: true,
    stepsPerSecond: cfg.stepsPerSecond,
    dirty: { start: 0x80000, end: 0xf0000 },
    ...(cfg.sharedMiB ? { shared: { gpa: 0x100000, pages: (cfg.sharedMiB << 20) / 4096 } } : {}),
  });
  await vmm.waitSteps(50);
  const r = await migrate(vmm.liveGuest(), {
    to: { port: Number(portArg) },
    trustedRoots: roots,
    downtimeLimitMs: cfg.downtimeLimitMs,
    timeLimitMs: cfg.timeLimitMs,
    answerTimeoutMs: 600_000,
  });
  process.stdout.write(`${JSON.stringify({ ...r, lastStep: vmm.steps.at(-1) })}\n`);
  await vmm.close();
}
process.exit(0);

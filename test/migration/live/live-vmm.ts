/**
 * One host of the live-migration tests (`node live-vmm.js <role> <port> <config-json>`): each process is
 * its own host, with its own hybrid backend (real KVM for the guest, its own mock SEV firmware with its
 * own chip keys). Prints `LISTENING <port>` (target), `RUNNING` (source, guest counting) and phase
 * markers on stderr; the last stdout line is the JSON the test checks.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { Kvm, SevPlatform } from '../../../lib/index.js';
import { HybridBackend } from '../../../lib/backends/hybrid/index.js';
import { mockAmdRoots } from '../../../lib/backends/mock/index.js';
import { DEMO_LAYOUT, DemoVmm, setUpExits } from '../../../lib/app/migration/demo-vmm.js';
import { migrate, type MigrateOptions } from '../../../lib/migration/live/source.js';
import { receive } from '../../../lib/migration/live/target.js';
import { amdCertsBytes } from '../../../lib/migration/live/target-check.js';
import type { GuestMemory } from '../../../lib/kvm/guest-memory.js';
import { PRIVATE_PATTERN, SHARED_PATTERN } from './patterns.js';
import { HYPERCALL_DOORBELL_PORT } from '../../../lib/app/guest/vmm-programs.js';

export interface LiveVmmConfig {
  policy?: number;
  stepsPerSecond?: number;
  /** Source: steps before migrating, and after a failed migration (the guest must keep running). */
  stepsBefore?: number;
  stepsAfter?: number;
  migrate?: Partial<Pick<MigrateOptions, 'downtimeLimitMs' | 'timeLimitMs' | 'ignoreMigrationControl' | 'autoConverge'>>;
  /** Target: present a chain that does not verify (another root's ASK ‖ ARK). */
  badChain?: boolean;
  /** Source: do not trust the mock root (the target's chain then does not verify). */
  untrusted?: boolean;
  announceReady?: boolean;
  /** Source: SIGKILL itself when this phase starts. */
  dieIn?: string;
  memorySize?: number;
}

const role = process.argv[2]!;
const port = Number(process.argv[3]);
const cfg = JSON.parse(process.argv[4] ?? '{}') as LiveVmmConfig;
const say = (s: string) => process.stderr.write(`${s}\n`);

function pageHashes(mem: GuestMemory): string[] {
  const out: string[] = [];
  for (let o = 0; o < mem.size; o += 4096)
    out.push(
      createHash('sha256')
        .update(mem.view(mem.guestPhysAddr + BigInt(o), 4096))
        .digest('hex')
        .slice(0, 16),
    );
  return out;
}
/** This process's fds, by what they are (a socket, anon_inode:kvm-vm, /dev/sev…). */
const fdTable = (): Map<string, string> => {
  const m = new Map<string, string>();
  for (const f of readdirSync('/proc/self/fd')) {
    try {
      m.set(f, readlinkSync(`/proc/self/fd/${f}`));
    } catch {
      /* the directory's own fd, closed by now */
    }
  }
  return m;
};
/** fds opened since `before`, but /dev/null (node opens it lazily for its own use). */
const newFds = (before: Map<string, string>): string[] =>
  [...fdTable()].filter(([f, l]) => before.get(f) !== l && l !== '/dev/null').map(([, l]) => l);
const runsOf = (it: Iterable<{ gpa: bigint; pages: number; state: string }>) =>
  [...it].map((r) => `${r.gpa.toString(16)}+${r.pages}:${r.state}`);

const backend = new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } });
using kvm = Kvm.open({ backend }); // process.exit() ends the process: the kernel closes what is left
using platform = SevPlatform.open(backend);
const roots = mockAmdRoots();

if (role === 'target') {
  const fds0 = fdTable();
  const guests0 = (await platform.platformStatus()).guestCount;
  const amdCerts = amdCertsBytes(cfg.badChain ? { ask: roots[0]!.ask, ark: roots[0]!.ark } : roots[1]!);
  let out: Record<string, unknown>;
  try {
    const got = await receive({
      from: { port },
      kvm,
      platform,
      amdCerts,
      setup: setUpExits,
      onListening: (a) => say(`LISTENING ${typeof a === 'string' ? a : a.port}`),
      onProgress: (p) => say(`PHASE ${p.phase}`),
    });
    const hashes = pageHashes(got.memory[0]!.memory);
    const vmm = DemoVmm.adopt(got, platform, { stepsPerSecond: cfg.stepsPerSecond ?? 0 });
    // The tracker as adopted (synchronously: the guest has not run here yet).
    const tracker = { runs: runsOf(vmm.pageStates.runs()), vmState: vmm.pageStates.vmState, generation: vmm.pageStates.generation };
    await vmm.waitSteps(cfg.stepsAfter ?? 50);
    out = {
      ok: true,
      steps: vmm.steps.slice(0, cfg.stepsAfter ?? 50),
      hashes,
      pageStates: runsOf(got.pageStates),
      migrationControl: got.migrationControl,
      tracker,
      devices: got.devices,
      status: (await got.sev.guestStatus()).stateName,
    };
    await vmm.close();
  } catch (e) {
    out = { ok: false, error: (e as Error).message, code: (e as { code?: string }).code };
  }
  await new Promise((r) => setTimeout(r, 100)); // a destroyed socket's fd closes on a later tick
  out['newFds'] = newFds(fds0);
  out['leaks'] = { fds: (out['newFds'] as string[]).length, guests: (await platform.platformStatus()).guestCount - guests0 };
  process.stdout.write(`\n${JSON.stringify(out)}\n`);
  process.exit(0);
} else {
  const plantPrivate = (mem: GuestMemory) => {
    const s = DEMO_LAYOUT.secret;
    for (let i = 0; i < s.pages; i++) mem.write(BigInt(s.gpa + i * 4096 + 100), PRIVATE_PATTERN);
  };
  const vmm = await DemoVmm.launch({
    kvm,
    platform,
    policy: cfg.policy ?? 0,
    doorbell: true,
    stepsPerSecond: cfg.stepsPerSecond ?? 0,
    announceReady: cfg.announceReady ?? true,
    plant: plantPrivate,
    ...(cfg.memorySize ? { memorySize: cfg.memorySize } : {}),
  });
  await vmm.waitSteps(cfg.stepsBefore ?? 200);
  // The guest made this range shared; the VMM puts plaintext there, as a device would.
  for (let i = 0; i < DEMO_LAYOUT.shared.pages; i++) vmm.memory.write(BigInt(DEMO_LAYOUT.shared.gpa + i * 4096 + 200), SHARED_PATTERN);
  say('RUNNING');
  const result = await migrate(vmm.liveGuest(), {
    to: { port },
    ...(cfg.untrusted ? {} : { trustedRoots: roots }),
    ...cfg.migrate,
    onProgress: (p) => {
      say(`PHASE ${p.phase} ${p.round}`);
      if (cfg.dieIn && p.phase === cfg.dieIn) process.kill(process.pid, 'SIGKILL');
    },
  });
  const out: Record<string, unknown> = { result };
  if (result.owner === 'target') {
    out['lastStep'] = vmm.steps.at(-1);
    out['hashes'] = pageHashes(vmm.memory);
    out['pageStates'] = runsOf(vmm.pageStates.runs());
    out['tracker'] = { vmState: vmm.pageStates.vmState, generation: vmm.pageStates.generation };
    out['status'] = (await vmm.sev.guestStatus()).stateName;
    await vmm.loop.stop();
  } else {
    // The guest is still ours: it must run on.
    const before = vmm.steps.length;
    try {
      await vmm.waitSteps(cfg.stepsAfter ?? 50);
      out['ranOn'] = vmm.steps.length - before;
      const s = vmm.steps;
      out['consecutive'] = s.every((v, i) => i === 0 || v === s[i - 1]! + 1);
    } catch (e) {
      out['ranOn'] = 0;
      out['runError'] = (e as Error).message;
    }
    out['status'] = (await vmm.sev.guestStatus()).stateName;
    await vmm.loop.stop();
  }
  process.stdout.write(`\n${JSON.stringify(out)}\n`);
  process.exit(0);
}

/**
 * `kvm-sev page-map`: runs a guest that reports its page states (lib/app/demo/page-state-guest.ts)
 * and shows the VMM's view of it while it runs: one character a page, the runs of private and shared
 * pages, every change with its cause and boot generation, and what the tracker ignored and why.
 */
import { parseArgs } from 'node:util';
import { PageStateGuest, PAGE_STATE_GUEST_RAM } from '../demo/page-state-guest.js';
import type { PageStateStep } from '../guest/page-state-programs.js';
import { HYPERCALL_DOORBELL_PORT } from '../guest/vmm-programs.js';
import type { PageStateTracker } from '../../sev/page-states/page-state-tracker.js';
import type { PageState } from '../../sev/page-states/page-state-view.js';
import { BACKEND_HELP, BACKEND_OPTION, hostFrom } from './backend-option.js';
import { bold, dim, EXIT, toJson, UsageError, yellow } from './output.js';

export const PAGE_MAP_HELP = `Usage: kvm-sev page-map [--backend native|hybrid|mock] [--scenario boot|kexec-race] [--no-generations] [--json]

Launches a small SEV guest (real firmware, or the mock's on the hybrid and the mock) that reports its
page states the way Linux does: KVM_HC_MAP_GPA_RANGE hypercalls and MSR_KVM_MIGRATION_CONTROL. Shows
the VMM's page map at each point where the guest pauses, and at its end.
${BACKEND_HELP}
  --scenario       boot (default): a boot, some device pages shared, a kexec, the next boot;
                   kexec-race: the kexec race of the v12 SEV live-migration patches: two vCPUs,
                   a late request from the old boot lands after the reset
  --no-generations track without boot generations (shows what the race does to such a tracker)
  --json           a machine-readable report

On the hybrid, this host's KVM may never return a guest's VMMCALL, so the guest rings the hybrid's
EMULATED hypercall doorbell (an OUT to port 0x${HYPERCALL_DOORBELL_PORT.toString(16)}) and the output says so.`;

const ENC = 0x10;
const BOOT: PageStateStep[] = [
  { op: 'cpuid' },
  { op: 'map', gpa: 0, pages: 16, attrs: ENC }, // kvm_init_platform(): all RAM encrypted
  { op: 'map', gpa: 0x7000, pages: 1, attrs: 0 }, // __bss_decrypted
  { op: 'msr', value: 1 }, // KVM_MIGRATION_READY
  { op: 'map', gpa: 0xc000, pages: 4, attrs: 0 }, // a driver's DMA buffers (swiotlb)
  { op: 'sync' },
  { op: 'map', gpa: 0xe000, pages: 2, attrs: ENC }, // half of them freed
  { op: 'sync' },
  { op: 'msr', value: 0 }, // kexec: kvm_guest_cpu_offline()
  { op: 'map', gpa: 0, pages: 16, attrs: ENC }, // the next boot resets its page states
  { op: 'map', gpa: 0x7000, pages: 1, attrs: 0 },
  { op: 'msr', value: 1 },
];
const RACE: { vcpus: PageStateStep[][]; schedule: number[] } = {
  vcpus: [
    [
      { op: 'msr', value: 1 },
      { op: 'map', gpa: 0x8000, pages: 2, attrs: 0 },
      { op: 'sync' },
      { op: 'msr', value: 0 },
      { op: 'map', gpa: 0, pages: 16, attrs: ENC },
      { op: 'sync' },
      { op: 'map', gpa: 0xc000, pages: 1, attrs: 0 },
      { op: 'msr', value: 1 },
    ],
    [
      { op: 'map', gpa: 0xa000, pages: 1, attrs: 0 },
      { op: 'msr', value: 0 },
    ],
  ],
  schedule: [0, 0, 1],
};

const CHAR: Record<PageState, string> = { normal: 'N', private: 'P', shared: 'S', converting: 'C' };
const hex = (n: bigint | number) => `0x${n.toString(16).padStart(5, '0')}`;

interface Snapshot {
  at: string;
  vmState: string;
  migrationReady: boolean;
  generation: number;
  map: string;
  runs: { gpa: string; pages: number; state: PageState }[];
}

function snap(at: string, tr: PageStateTracker): Snapshot {
  const runs = [...tr.runs()];
  return {
    at,
    vmState: tr.vmState,
    migrationReady: tr.migrationReady,
    generation: tr.generation,
    map: runs.map((r) => CHAR[r.state].repeat(r.pages)).join(''),
    runs: runs.map((r) => ({ gpa: hex(r.gpa), pages: r.pages, state: r.state })),
  };
}

export async function pageMap(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...BACKEND_OPTION,
      scenario: { type: 'string' },
      'no-generations': { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(PAGE_MAP_HELP);
    return EXIT.OK;
  }
  const scenario = values.scenario ?? 'boot';
  if (scenario !== 'boot' && scenario !== 'kexec-race') throw new UsageError(`--scenario must be boot or kexec-race, got '${scenario}'`);
  const host = await hostFrom(values, { hybrid: { emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } } });
  const vcpus = scenario === 'boot' ? [BOOT] : RACE.vcpus;
  const schedule = scenario === 'boot' ? [] : RACE.schedule;
  using g = await PageStateGuest.create({ backend: host.backend, vcpus, tracker: { generations: !values['no-generations'] } });
  const path =
    g.hypercallPath === 'doorbell'
      ? `EMULATED doorbell (OUT to port 0x${HYPERCALL_DOORBELL_PORT.toString(16)}): this host's KVM does not return a guest's VMMCALL`
      : g.hypercallPath === 'model'
        ? "the mock's KVM model (no guest code runs: the guest's instructions are queued)"
        : 'VMMCALL, KVM_EXIT_HYPERCALL';
  const snapshots: Snapshot[] = [snap('after LAUNCH_FINISH', g.tracker)];
  let pauses = 0;
  const pause = (i: number) => snapshots.push(snap(`vCPU ${i} paused (sync ${++pauses})`, g.tracker));
  for (const i of schedule) if ((await g.step(i)) === 'sync') pause(i);
  for (let i = 0; i < g.vcpus.length; i++) while ((await g.step(i)) === 'sync') pause(i);
  snapshots.push(snap('the guest finished', g.tracker));
  const report = {
    backend: host.name,
    reason: host.reason,
    hypercalls: g.hypercallPath,
    scenario,
    generations: !values['no-generations'],
    ramPages: PAGE_STATE_GUEST_RAM / 4096,
    snapshots,
    changes: g.changes.map((c) => ({ ...c, gpa: hex(c.gpa) })),
    log: g.tracker.log.map((e) => ({ ...e, ...(e.gpa !== undefined ? { gpa: hex(e.gpa) } : {}) })),
    records: g.vcpus.map((_, i) => g.record(i) ?? null),
  };
  if (values.json) {
    console.log(toJson(report));
    return EXIT.OK;
  }
  console.log(`${bold(`backend: ${host.name}`)} ${dim(`(${host.reason})`)}`);
  console.log(`hypercalls: ${g.hypercallPath === 'doorbell' ? yellow(path) : path}`);
  console.log(
    `guest: ${g.vcpus.length} vCPU${g.vcpus.length > 1 ? 's' : ''}, ${report.ramPages} pages of RAM; scenario ${scenario}${report.generations ? '' : ', WITHOUT boot generations'}`,
  );
  console.log(dim('page map: one character a 4 KiB page from 0x0: P private, S shared, N normal, C converting'));
  for (const s of snapshots)
    console.log(
      `  ${s.map}  ${s.at.padEnd(28)} VM ${s.vmState}, migration ${s.migrationReady ? 'ready' : 'not ready'}, generation ${s.generation}`,
    );
  console.log(bold('runs at the end:'));
  for (const r of snapshots[snapshots.length - 1]!.runs) console.log(`  ${r.gpa} ${String(r.pages).padStart(3)} pages  ${r.state}`);
  console.log(bold(`changes (${g.changes.length}):`));
  for (const c of g.changes)
    console.log(`  gen ${c.generation}  ${c.cause.padEnd(13)} ${hex(c.gpa)} +${String(c.pages).padEnd(3)} ${c.from} → ${c.to}`);
  if (g.tracker.log.length) {
    console.log(bold('log:'));
    for (const e of g.tracker.log) console.log(`  ${e.kind.padEnd(7)} ${e.vcpu !== undefined ? `vCPU ${e.vcpu}: ` : ''}${e.reason}`);
  }
  return EXIT.OK;
}

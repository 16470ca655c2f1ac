/**
 * `kvm-sev migrate` and `kvm-sev receive`: host-to-host live migration of a running SEV guest
 * (lib/migration/live), shown with the demonstration guest (lib/app/migration/demo-vmm.ts), which counts
 * in memory, dirties pages and flips a range between shared and private. `receive` listens and runs the
 * guest on; `migrate` launches it, lets it run, and moves it mid-run, with a progress bar.
 */
import { parseArgs } from 'node:util';
import type { Backend } from '../../backend/contract.js';
import { Kvm } from '../../kvm/kvm.js';
import { SevPlatform } from '../../sev/platform.js';
import { migrate as liveMigrate, type MigrationProgress } from '../../migration/live/source.js';
import { receive as liveReceive } from '../../migration/live/target.js';
import { amdCertsBytes } from '../../migration/live/target-check.js';
import type { ConnectTo, ListenOn } from '../../migration/live/endpoint.js';
import { HYPERCALL_DOORBELL_PORT } from '../guest/vmm-programs.js';
import { DemoVmm, setUpExits } from '../migration/demo-vmm.js';
import { openHost } from '../open-host.js';
import { bold, dim, EXIT, progressBar, toJson, UsageError } from './output.js';

const BACKEND = `  --backend native|hybrid   default: native where KVM and SEV work, else hybrid (real KVM, mocked SEV);
                            the pure mock runs no guest code, so it cannot show a running guest move`;

export const MIGRATE_HELP = `Usage: kvm-sev migrate (--to HOST:PORT | --unix PATH) [options]

Launches the demonstration SEV guest (it counts in memory, dirties a page per step and flips a range
between shared and private), lets it run, then moves it, running, to the host where \`kvm-sev receive\`
listens: the target's certificate chain is verified first, private pages travel through the firmware
(SEND_UPDATE_DATA), shared pages as plaintext, and the guest stops only for the last dirty pages.
Any failure cancels the migration (SEND_CANCEL) and the guest runs on here.

  --to HOST:PORT          the target (TCP)            --unix PATH   the target's Unix socket
  --memory MIB            guest RAM in MiB (default 1)
  --steps N               steps the guest runs before it moves (default 500)
  --dirty-rate N          steps (dirtied pages) per second (default: as fast as it runs)
  --downtime MS           the longest stop (default 300)
  --time-limit MS         give up after this long (default 600000)
  --ignore-migration-control   migrate although the guest did not set MSR_KVM_MIGRATION_CONTROL
  --policy HEX            the guest's SEV policy (default 0)
  --json                  the result as JSON
${BACKEND}`;

export const RECEIVE_HELP = `Usage: kvm-sev receive (--listen [HOST:]PORT | --unix PATH) [options]

Waits for one guest from \`kvm-sev migrate\`, receives it (RECEIVE_START, RECEIVE_UPDATE_DATA,
RECEIVE_FINISH), resumes it once the source has committed, and lets it run on for a number of steps.

  --listen [HOST:]PORT    TCP (default host 127.0.0.1; port 0 picks one, printed)
  --unix PATH             a Unix socket
  --steps N               steps the guest runs here before the command ends (default 100)
  --json                  the result as JSON
${BACKEND}`;

function int(name: string, v: string | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

function hostPort(name: string, v: string): { host: string; port: number } {
  const m = /^(?:(.*):)?(\d+)$/.exec(v);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--${name} must be [HOST:]PORT, got '${v}'`);
  return { host: m[1] || '127.0.0.1', port };
}

/** The host: native with SEV, else the hybrid with its hypercall doorbell (for KVMs that keep VMMCALL). */
async function openDemoHost(backend: string | undefined): Promise<{ backend: Backend; name: string; mocked: boolean }> {
  if (backend !== undefined && backend !== 'native' && backend !== 'hybrid') {
    throw new UsageError(
      backend === 'mock'
        ? '--backend mock runs no guest code: a running guest cannot be shown moving (use hybrid)'
        : `--backend must be native or hybrid, got '${backend}'`,
    );
  }
  const picked = await openHost(backend ? { backend: backend } : {});
  if (picked.name === 'native') return { backend: picked.backend, name: 'native', mocked: false };
  if (picked.name === 'mock')
    throw new UsageError('this host has no usable /dev/kvm: the guest cannot run here (the mock runs no guest code)');
  const { HybridBackend } = await import('../../backends/hybrid/hybrid-backend.js');
  return { backend: new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } }), name: 'hybrid', mocked: true };
}

/** The mock firmware's AMD root (hybrid): trusted only because both ends are this CLI's mocked platforms. */
async function mockRoots() {
  const { mockAmdRoots } = await import('../../backends/mock/index.js');
  return mockAmdRoots();
}

export async function migrate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      to: { type: 'string' },
      unix: { type: 'string' },
      memory: { type: 'string' },
      steps: { type: 'string' },
      'dirty-rate': { type: 'string' },
      downtime: { type: 'string' },
      'time-limit': { type: 'string' },
      'ignore-migration-control': { type: 'boolean' },
      policy: { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(MIGRATE_HELP);
    return EXIT.OK;
  }
  if ((values.to === undefined) === (values.unix === undefined)) throw new UsageError('give the target: --to HOST:PORT or --unix PATH');
  const to: ConnectTo = values.unix !== undefined ? { path: values.unix } : hostPort('to', values.to!);
  const memory = int('memory', values.memory, 1, 1);
  const steps = int('steps', values.steps, 500, 1);
  const rate = int('dirty-rate', values['dirty-rate'], 0);
  const downtime = int('downtime', values.downtime, 300, 1);
  const timeLimit = int('time-limit', values['time-limit'], 600_000, 1);
  let policy = 0;
  if (values.policy !== undefined) {
    policy = Number.parseInt(values.policy.replace(/^0x/i, ''), 16);
    if (!Number.isSafeInteger(policy) || policy < 0 || policy > 0xffffffff || !/^(0x)?[0-9a-f]+$/i.test(values.policy))
      throw new UsageError(`--policy must be a 32-bit hex number, got '${values.policy}'`);
  }
  const host = await openDemoHost(values.backend);
  using kvm = Kvm.open({ backend: host.backend });
  using platform = SevPlatform.open(host.backend);
  const vmm = await DemoVmm.launch({ kvm, platform, memorySize: memory << 20, policy, doorbell: host.mocked, stepsPerSecond: rate });
  try {
    await vmm.waitSteps(steps);
    if (!values.json)
      console.log(`${bold(`backend: ${host.name}`)} ${dim(`the guest runs (${memory} MiB, step ${vmm.steps.at(-1)}); migrating`)}`);
    const bar = progressBar('migrating');
    let lastRound = -1;
    const onProgress = (p: MigrationProgress) => {
      const total = p.round === 0 ? (memory << 20) / 4096 : p.privatePages + p.sharedPages + p.dirtyPages;
      bar.update(p.privatePages + p.sharedPages, total);
      if (!values.json && p.phase === 'pre-copy' && p.round !== lastRound && p.dirtyPages > 0) {
        lastRound = p.round;
        bar.done();
        console.log(
          `round ${p.round}: ${p.privatePages} private + ${p.sharedPages} shared pages sent, ${p.dirtyPages} dirty, ` +
            `PSP ${p.pspRate.toFixed(0)} pages/s, estimated downtime ${p.estimatedDowntimeMs.toFixed(0)} ms${p.throttle ? `, throttle ${Math.round(p.throttle * 100)} %` : ''}`,
        );
      }
    };
    const r = await liveMigrate(vmm.liveGuest(), {
      to,
      downtimeLimitMs: downtime,
      timeLimitMs: timeLimit,
      ...(values['ignore-migration-control'] ? { ignoreMigrationControl: true } : {}),
      ...(host.mocked ? { trustedRoots: await mockRoots() } : {}),
      onProgress,
    });
    bar.done();
    const lastStep = vmm.steps.at(-1);
    if (values.json) console.log(toJson({ ...r, lastStep }));
    else if (r.owner === 'target')
      console.log(
        `moved: the guest stopped at step ${lastStep} and now runs on the target; ${r.rounds} rounds, ` +
          `${r.privatePages} private + ${r.sharedPages} shared pages, downtime ${r.downtimeMs.toFixed(1)} ms, total ${(r.totalMs / 1000).toFixed(2)} s`,
      );
    else console.log(`not moved (${r.cancelled ? 'SEND_CANCEL issued; ' : ''}the guest runs on here): ${r.reason}`);
    return r.owner === 'target' ? EXIT.OK : EXIT.FAILED;
  } finally {
    await vmm.close();
  }
}

export async function receive(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string' },
      unix: { type: 'string' },
      steps: { type: 'string' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(RECEIVE_HELP);
    return EXIT.OK;
  }
  if ((values.listen === undefined) === (values.unix === undefined))
    throw new UsageError('give where to listen: --listen [HOST:]PORT or --unix PATH');
  const from: ListenOn = values.unix !== undefined ? { path: values.unix } : hostPort('listen', values.listen!);
  const steps = int('steps', values.steps, 100, 1);
  const host = await openDemoHost(values.backend);
  using kvm = Kvm.open({ backend: host.backend });
  using platform = SevPlatform.open(host.backend);
  const roots = host.mocked ? await mockRoots() : undefined;
  const bar = progressBar('receiving');
  const got = await liveReceive({
    from,
    kvm,
    platform,
    setup: setUpExits,
    ...(roots ? { amdCerts: amdCertsBytes(roots[1]!) } : {}),
    onListening: (a) => console.error(`listening on ${typeof a === 'string' ? a : `${a.address}:${a.port}`}`),
    onProgress: (p) => bar.update(p.privatePages + p.sharedPages, Math.max(1, p.privatePages + p.sharedPages)),
  });
  bar.done();
  const vmm = DemoVmm.adopt(got, platform, { doorbell: host.mocked });
  try {
    await vmm.waitSteps(steps);
    const s = vmm.steps;
    const result = {
      first: s[0],
      last: s.at(-1),
      consecutive: s.every((v, i) => i === 0 || v === s[i - 1]! + 1),
      rounds: got.rounds,
      privatePages: got.privatePages,
      sharedPages: got.sharedPages,
      status: (await got.sev.guestStatus()).stateName,
    };
    if (values.json) console.log(toJson(result));
    else
      console.log(
        `received: ${got.privatePages} private + ${got.sharedPages} shared pages in ${got.rounds} rounds; ` +
          `the guest runs on here (${result.status}): steps ${result.first}…${result.last}`,
      );
    return result.consecutive ? EXIT.OK : EXIT.FAILED;
  } finally {
    await vmm.close();
  }
}

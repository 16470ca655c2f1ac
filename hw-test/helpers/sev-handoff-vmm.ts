/**
 * A tiny SEV VMM for the cross-process handoff tests, on the hybrid backend with the shared mock SEV
 * service (real KVM here, SEV served by the daemon at $SEV_SOCKET for kernel profile $SEV_KERNEL):
 *   node sev-handoff-vmm.js source <socket> <exits>   launches an SEV counter guest, runs it, hands it off
 *   node sev-handoff-vmm.js target <socket> <exits>   takes it over (token or move) and runs it on
 * Each prints one JSON line. $HANDOFF_DIE kills the process (SIGKILL) at a named point; `after-send`
 * prints the token (TOKEN=<hex>) on stderr first.
 */
import { writeSync } from 'node:fs';
import { HybridBackend } from '../../lib/backends/hybrid/hybrid-backend.js';
import { counterProgram } from '../../lib/app/guest/programs.js';
import { loadProgram } from '../../lib/app/guest/setup.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { Vcpu } from '../../lib/kvm/vcpu.js';
import { pickEncContextMethod, sevHandoff } from '../../lib/migration/enc-context.js';
import { handOff, takeOver, type SevHandoff } from '../../lib/migration/handoff.js';
import type { KernelProfile } from '../../lib/backends/mock/options.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../lib/sev/launch.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM } from '../../lib/uapi/constants.js';

// The result line, written before process.exit(): console.log to a pipe is asynchronous, and a long
// `seen` (a fast run() records many exits while the new VMM prepares) would be cut off at exit.
const out = (o: Record<string, unknown>) => writeSync(1, JSON.stringify(o) + '\n');

const PORT = 0x500;
const [role, path, nStr] = process.argv.slice(2);
const n = Number(nStr);
const kernel = (process.env['SEV_KERNEL'] ?? '7.2') as KernelProfile;
const die = process.env['HANDOFF_DIE'];
const local = kernel === 'local-migration-2021';
const lm = local ? { localMigration: { profile: 'local-migration-2021' as const } } : {};

async function counts(vcpu: Vcpu, k: number, seen: number[]): Promise<void> {
  for (let i = 0; i < k; i++) {
    const e = await vcpu.run();
    if (e.reason !== 'io' || e.port !== PORT) throw new Error(`unexpected exit ${e.reason}`);
    seen.push(new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0, true));
  }
}

const backend = new HybridBackend({ kernel, sevService: { socket: process.env['SEV_SOCKET']! } });
const kvm = Kvm.open({ backend });
const method = pickEncContextMethod(kvm, lm).method;
const seen: number[] = [];
if (role === 'source') {
  const platform = SevPlatform.open(backend);
  const vm = kvm.createVm(local ? KVM_X86_DEFAULT_VM : KVM_X86_SEV_VM);
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'sev-handoff-guest' });
  const launching = await (await SevLaunch.init(vm, { platform })).launchStart({ policy: 0 });
  const vcpu = vm.createVcpu(0);
  loadProgram(mem, vcpu, counterProgram(0x2000, PORT));
  await launching.launchUpdateData(mem.range(0n, 0x10000));
  await (await launching.launchMeasure()).launchFinish();
  await counts(vcpu, n, seen);
  const cmds = new SevGuestCommands(vm, platform, lm);
  const inner = sevHandoff({ source: cmds, method, ...lm });
  const sev: SevHandoff = {
    ...inner,
    async send() {
      const r = await inner.send();
      if (die === 'after-send') {
        console.error(`TOKEN=${r.token?.toString(16)}`);
        process.kill(process.pid, 'SIGKILL');
      }
      return r;
    },
  };
  const socket = backend.unixConnect(path!);
  let stop = false;
  const loop = (async () => {
    while (!stop) await counts(vcpu, 1, seen);
  })();
  const r = await handOff({
    vm,
    vcpus: [vcpu],
    memory: [mem],
    socket,
    sev,
    pause: async () => {
      stop = true;
      await loop;
    },
  });
  if (r.owner === 'source') await counts(vcpu, n, seen); // still ours: resume
  out({ role, seen, owner: r.owner, reason: r.reason ?? null, encContext: r.encContext ?? null, method });
  platform.close();
} else {
  const listener = backend.unixListen(path!);
  console.error('TARGET-LISTENING');
  const socket = await backend.unixAccept(listener);
  const g = await takeOver({
    kvm,
    socket,
    sev: sevHandoff({ method, ...lm, init: (c) => c.init() }),
    beforeReady: () => {
      if (die === 'before-ready') process.kill(process.pid, 'SIGKILL');
    },
  });
  if (die === 'after-takeover') process.kill(process.pid, 'SIGKILL');
  await counts(g.vcpus[0]!, n, seen);
  out({ role, seen, owner: g.owner, encContext: g.encContext ?? null, method });
  g.vm.close();
  listener.close();
}
kvm.close();
process.exit(0);

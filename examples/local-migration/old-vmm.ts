// The old VMM: launches an SEV guest, runs it, then hands it to the new VMM over its Unix socket.
import {
  Kvm,
  SevGuestCommands,
  SevLaunch,
  SevPlatform,
  counterProgram,
  handOff,
  loadProgram,
  pickEncContextMethod,
  sevHandoff,
} from '../../lib/index.js';
import { HybridBackend } from '../../lib/backends/hybrid/index.js';
import { KVM_X86_SEV_VM } from '../../lib/uapi/index.js';

const socketPath = process.argv[2]!; // where the new VMM listens
const backend = new HybridBackend({ shared: true }); // real KVM; SEV from the mock SEV service both VMMs share
using kvm = Kvm.open({ backend });
using platform = SevPlatform.open(backend);
const vm = kvm.createVm(KVM_X86_SEV_VM);
const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: true }); // memfd: the new VMM maps these pages
const launching = await (await SevLaunch.init(vm, { platform })).launchStart({ policy: 0 });
const vcpu = vm.createVcpu(0);
loadProgram(mem, vcpu, counterProgram(0x2000, 0x500)); // counts in guest memory, reports with OUT 0x500
await launching.launchUpdateData(mem);
await (await launching.launchMeasure()).launchFinish();
const seen: number[] = [];
while (seen.length < 3) {
  const exit = await vcpu.run();
  if (exit.reason === 'io') seen.push(Buffer.from(exit.data).readUInt32LE(0));
}
console.log(`old VMM: the guest counted ${seen.join(' ')}`);
const socket = backend.unixConnect(socketPath); // this side's socket: a connection to the new VMM's
const { method } = pickEncContextMethod(kvm);
const sev = sevHandoff({ source: new SevGuestCommands(vm, platform), method });
const r = await handOff({ vm, vcpus: [vcpu], memory: [mem], socket, sev }); // the vCPU is stopped: no run in flight
console.log(`old VMM: the guest now belongs to the ${r.owner} VMM${r.reason ? ` (${r.reason})` : ''}`);
socket.close();
backend.sevService!.close();
process.exitCode = r.owner === 'target' ? 0 : 1;

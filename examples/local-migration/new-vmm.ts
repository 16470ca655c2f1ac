// The new VMM: listens on a Unix socket, takes the running SEV guest over, and runs it on.
import { Kvm, pickEncContextMethod, sevHandoff, takeOver } from '../../lib/index.js';
import { HybridBackend } from '../../lib/backends/hybrid/index.js';

const socketPath = process.argv[2]!; // the old VMM connects here
const backend = new HybridBackend({ shared: true }); // real KVM; SEV from the mock SEV service both VMMs share
using kvm = Kvm.open({ backend });
const listener = backend.unixListen(socketPath); // this side's socket: listen, then accept the old VMM
console.log('new VMM: listening'); // now start the old VMM
const socket = await backend.unixAccept(listener);
const { method } = pickEncContextMethod(kvm); // 'move' (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM) on this kernel
const guest = await takeOver({ kvm, socket, sev: sevHandoff({ method }) });
const seen: number[] = [];
while (seen.length < 3) {
  const exit = await guest.vcpus[0]!.run(); // the guest reports its counter with OUT 0x500, EAX
  if (exit.reason === 'io') seen.push(Buffer.from(exit.data).readUInt32LE(0));
}
console.log(`new VMM: took the guest over (${guest.encContext}) and it counted on: ${seen.join(' ')}`);
guest.vm.close();
socket.close();
listener.close();
backend.sevService!.close();

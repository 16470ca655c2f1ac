import { Kvm, NativeBackend, helloProgram, loadProgram, SerialPort, type VcpuExit } from '../lib/index.js';

using kvm = Kvm.open({ backend: new NativeBackend() }); // the real /dev/kvm
using vm = kvm.createVm();
const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
const vcpu = vm.createVcpu(0);
loadProgram(mem, vcpu, helloProgram('hi from the guest\n')); // 16-bit real-mode code, see lib/app/guest/
const serial = new SerialPort(); // a 16550A UART at 0x3f8 (COM1)
let exit: VcpuExit;
while (serial.handle((exit = await vcpu.run()))); // KVM_RUN; the event loop keeps turning
console.log(JSON.stringify(serial.output), exit.reason, vcpu.getRegs().rax); // "hi from the guest\n" hlt 24589n

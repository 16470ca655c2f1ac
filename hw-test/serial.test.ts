/**
 * A real guest probes the 16550A the way Linux's autoconfig() starts (IER test, loopback test, FIFO
 * detection, then counts what a loopback burst leaves in the receive FIFO), every access a port-I/O
 * exit of the real /dev/kvm handled by SerialPort.
 */
import { Kvm } from '../lib/kvm/kvm.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { Asm } from '../lib/app/guest/asm.js';
import { SerialPort } from '../lib/app/guest/serial.js';
import { loadProgram } from '../lib/app/guest/setup.js';
import type { VcpuExit } from '../lib/kvm/exits.js';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const kvm = kvmDevice();

/**
 * BL = IER after writing 0, BH = IER after writing 0x0f, CL = MSR[7:4] with MCR = LOOP|OUT2|RTS,
 * CH = IIR after FCR = 1, SI = bytes received after 20 loopback writes with FIFOs on; then "ok\n" out.
 */
function probeProgram(): { origin: number; code: Uint8Array } {
  const a = new Asm({ bits: 16, origin: 0x1000 });
  a.mov('dx', 0x3f9)
    .xor('al', 'al')
    .out('dx', 'al')
    .in('al', 'dx')
    .mov('bl', 'al')
    .mov('al', 0x0f)
    .out('dx', 'al')
    .in('al', 'dx')
    .mov('bh', 'al')
    .xor('al', 'al')
    .out('dx', 'al')
    .mov('dx', 0x3fc)
    .mov('al', 0x1a)
    .out('dx', 'al')
    .mov('dx', 0x3fe)
    .in('al', 'dx')
    .and('al', 0xf0)
    .mov('cl', 'al')
    .mov('dx', 0x3fa)
    .mov('al', 1)
    .out('dx', 'al')
    .in('al', 'dx')
    .mov('ch', 'al')
    .mov('al', 7)
    .out('dx', 'al') // FIFOs on and cleared
    .mov('dx', 0x3fc)
    .mov('al', 0x10)
    .out('dx', 'al') // loopback
    .mov('dx', 0x3f8)
    .mov('di', 20)
    .label('send')
    .mov('ax', 'di')
    .out('dx', 'al')
    .dec('di')
    .jnz('send')
    .xor('si', 'si')
    .label('count')
    .mov('dx', 0x3fd)
    .in('al', 'dx')
    .test('al', 1) // LSR.DR
    .jz('counted')
    .mov('dx', 0x3f8)
    .in('al', 'dx')
    .inc('si')
    .jmp('count')
    .label('counted')
    .mov('dx', 0x3fc)
    .xor('al', 'al')
    .out('dx', 'al') // out of loopback
    .mov('dx', 0x3f8)
    .mov('al', 0x6f)
    .out('dx', 'al')
    .mov('al', 0x6b)
    .out('dx', 'al')
    .mov('al', 0x0a)
    .out('dx', 'al')
    .hlt();
  return { origin: 0x1000, code: a.assemble() };
}

hwTest(
  kvm,
  "a guest's autoconfig()-style probe of SerialPort through real port-I/O exits finds a 16550A with 16 bytes of FIFO",
  async (t) => {
    const k = Kvm.open({ backend: new NativeBackend() });
    t.teardown(() => k.close());
    const vm = k.createVm();
    t.teardown(() => vm.close());
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
    const vcpu = vm.createVcpu(0);
    loadProgram(mem, vcpu, probeProgram());
    const irq: boolean[] = [];
    const serial = new SerialPort({ irq: (level) => irq.push(level) });
    let exit: VcpuExit;
    let exits = 0;
    while (serial.handle((exit = await vcpu.run()))) exits++;
    t.is(exit.reason, 'hlt');
    const r = vcpu.getRegs();
    t.is(r.rbx & 0xffffn, 0x0f00n, 'IER read back 0, then 0x0f');
    t.is(r.rcx & 0xffffn, 0xc190n, 'IIR 0xC1 with FIFOs on; MSR DCD|CTS in loopback');
    t.is(r.rsi & 0xffffn, 16n, 'a 16-byte receive FIFO');
    t.is(serial.output, 'ok\n', 'only the bytes sent outside loopback went out');
    t.deepEqual(irq, [], 'no interrupt enabled');
    t.true(exits > 60);
  },
);

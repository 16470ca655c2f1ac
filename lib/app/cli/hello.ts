/** `kvm-sev hello`: boot the real-mode demonstration guest on /dev/kvm and print its serial output. */
import { parseArgs } from 'node:util';
import { Kvm } from '../../kvm/kvm.js';
import { NativeBackend } from '../../backends/native/native-backend.js';
import { helloProgram } from '../guest/programs.js';
import { SerialPort } from '../guest/serial.js';
import { loadProgram } from '../guest/setup.js';

export const HELLO_HELP =
  'Usage: kvm-sev hello [--message TEXT] [--json]\n\nBoots a 16-bit real-mode guest on /dev/kvm that prints TEXT through COM1 (0x3f8) and halts.';

export async function hello(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { message: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(HELLO_HELP);
    return 0;
  }
  const t0 = performance.now();
  const kvm = Kvm.open({ backend: new NativeBackend() });
  try {
    const vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
    const vcpu = vm.createVcpu(0);
    loadProgram(mem, vcpu, helloProgram(values.message ? `${values.message}\n` : undefined));
    const serial = new SerialPort();
    if (!values.json) serial.onByte = (b) => process.stdout.write(String.fromCharCode(b));
    let exits = 0;
    for (;;) {
      const exit = await vcpu.run();
      exits++;
      if (serial.handle(exit)) continue;
      if (exit.reason !== 'hlt')
        throw new Error(`unexpected exit: ${JSON.stringify(exit, (_, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`);
      break;
    }
    const regs = vcpu.getRegs();
    const report = { output: serial.output, exits, rax: `0x${regs.rax.toString(16)}`, ms: +(performance.now() - t0).toFixed(2) };
    if (values.json) console.log(JSON.stringify(report));
    else console.log(`guest halted after ${exits} exits in ${report.ms} ms (rax=${report.rax})`);
    vm.close();
    return 0;
  } finally {
    kvm.close();
  }
}

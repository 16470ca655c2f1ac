/** `kvm-sev hello`: boot the real-mode demonstration guest on /dev/kvm and print its serial output. */
import { parseArgs } from 'node:util';
import { Kvm } from '../../kvm/kvm.js';
import { NativeBackend } from '../../backends/native/native-backend.js';
import { helloProgram } from '../guest/programs.js';
import { SerialPort } from '../guest/serial.js';
import { loadProgram } from '../guest/setup.js';
import { EXIT, UsageError } from './output.js';

/** The guest's memory: one 64 KiB real-mode segment (DS = 0, SI walks the message). */
const GUEST_SIZE = 0x10000;
const ORIGIN = 0x1000;
/** The longest message (UTF-8 bytes, with the newline hello adds) that fits after the code, NUL included. */
const MAX_MESSAGE = GUEST_SIZE - ORIGIN - helloProgram(new Uint8Array(0), ORIGIN).code.length;

export const HELLO_HELP = `Usage: kvm-sev hello [--message TEXT] [--json]

Boots a 16-bit real-mode guest on /dev/kvm that prints TEXT (UTF-8, and a newline) through COM1 (0x3f8)
and halts. TEXT is at most ${MAX_MESSAGE - 1} bytes in UTF-8: the guest and its message share one 64 KiB segment.`;

/**
 * The message's bytes as the guest prints them: UTF-8, so any text survives the byte-wide serial
 * port. (A command-line argument cannot hold the NUL that would end it early.)
 */
function messageBytes(message: string | undefined): Uint8Array | undefined {
  if (message === undefined) return undefined;
  const bytes = Buffer.from(`${message}\n`, 'utf8');
  if (bytes.length > MAX_MESSAGE)
    throw new UsageError(
      `--message is ${bytes.length - 1} bytes in UTF-8; at most ${MAX_MESSAGE - 1} fit in the guest's 64 KiB real-mode segment`,
    );
  return bytes;
}

export async function hello(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { message: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(HELLO_HELP);
    return EXIT.OK;
  }
  const program = helloProgram(messageBytes(values.message), ORIGIN);
  const t0 = performance.now();
  const kvm = Kvm.open({ backend: new NativeBackend() });
  try {
    const vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: GUEST_SIZE });
    const vcpu = vm.createVcpu(0);
    loadProgram(mem, vcpu, program);
    const serial = new SerialPort();
    const out: number[] = [];
    let line: number[] = [];
    const flush = () => {
      if (line.length) process.stdout.write(Buffer.from(line));
      line = [];
    };
    serial.onByte = (b) => {
      out.push(b);
      if (values.json) return;
      line.push(b); // whole lines, so a UTF-8 sequence is never split across writes
      if (b === 0x0a) flush();
    };
    let exits = 0;
    for (;;) {
      const exit = await vcpu.run();
      exits++;
      if (serial.handle(exit)) continue;
      if (exit.reason !== 'hlt')
        throw new Error(`unexpected exit: ${JSON.stringify(exit, (_, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`);
      break;
    }
    flush();
    const regs = vcpu.getRegs();
    const report = {
      output: Buffer.from(out).toString('utf8'),
      exits,
      rax: `0x${regs.rax.toString(16)}`,
      ms: +(performance.now() - t0).toFixed(2),
    };
    if (values.json) console.log(JSON.stringify(report));
    else console.log(`guest halted after ${exits} exits in ${report.ms} ms (rax=${report.rax})`);
    vm.close();
    return EXIT.OK;
  } finally {
    kvm.close();
  }
}

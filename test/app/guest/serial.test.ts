/**
 * SerialPort as Linux's 8250 driver sees it: the register sequence of autoconfig() (IER test,
 * loopback test, FIFO detection and the 16550A variant probes, size_fifo()), serial8250_do_startup()
 * and set_termios(), the console write paths and the interrupt handler, replayed through port-I/O
 * exits (test/app/guest/linux-8250.ts), with what Linux concludes; then each register on its own.
 */
import test from 'ava';
import { SerialPort, kvmIrqLine } from '../../../lib/app/guest/serial.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { MockHost } from '../../../lib/backends/mock/index.js';
import { KVM_IRQCHIP } from '../../../lib/uapi/vmm-constants.js';
import { FCR, IER, IIR, LCR, LSR, MCR, MSR, UART } from '../../../lib/app/guest/serial-registers.js';
import type { VcpuExit } from '../../../lib/kvm/exits.js';
import { Linux8250, Port, autoconfig, scratchTest } from './linux-8250.js';

/** A UART whose IRQ output is recorded. */
function uart(): { serial: SerialPort; irq: boolean[] } {
  const irq: boolean[] = [];
  return { serial: new SerialPort({ irq: (level) => irq.push(level) }), irq };
}

test('autoconfig(): the IER test, the loopback test and the FIFO probes find a 16550A with a 16-byte FIFO', (t) => {
  const { serial, irq } = uart();
  const probe = autoconfig(new Port(serial));
  t.like(probe, { type: '16550A', fifosize: 16, txLoadsz: 16 });
  t.is(probe.failed, undefined);
  t.deepEqual(probe.seen, {
    ier_zero: 0, // IER[3:0] reads back what was written: 0 …
    ier_all: 0x0f, // … and all four enables
    msr_loop: MSR.DCD | MSR.CTS, // LOOP|OUT2|RTS: OUT2 comes back as DCD, RTS as CTS
    iir_fifo: 0xc1, // FCR.ENABLE_FIFO: IIR bits 7:6 set, no interrupt pending
    efr_dlab: 0xc1, // no EFR under DLAB (offset 2 is still the IIR) …
    efr_bf: 0xc1, // … nor under LCR = 0xBF
    iir_16750_a: 0xc0, // FCR bit 5 (64-byte FIFO) is not a 16550A's
    iir_16750_b: 0xc0,
    ier_uue: 0, // IER bit 6 (XScale's UUE) does not stick
    size_fifo: 16, // 256 bytes written in loopback, 16 received
  });
  // autoconfig() leaves the UART reset: FIFOs off, interrupts off, MCR and LCR as they were.
  t.is(serial.read(UART.IIR), IIR.NO_INT);
  t.is(serial.read(UART.IER), 0);
  t.is(serial.read(UART.MCR), 0);
  t.is(serial.read(UART.LCR), 0);
  t.is(serial.read(UART.LSR), LSR.THRE | LSR.TEMT);
  t.is(serial.output, '', 'neither the divisor bytes nor the loopback bytes went out on the line');
  t.deepEqual(irq, [], 'OUT2 was never set: the IRQ line stayed low');
  t.true(scratchTest(new Port(serial)), "autoconfig_8250()'s scratch register test");
});

test('serial8250_do_startup() and set_termios(): no THRE or TXEN bug, 115200 8N1, FIFOs with an 8-byte trigger, OUT2', (t) => {
  const { serial, irq } = uart();
  const drv = new Linux8250(serial);
  drv.configPort();
  t.is(drv.fcr, FCR.ENABLE_FIFO | 0x80);
  drv.startup(115200);
  t.deepEqual([...drv.bugs], []);
  t.like(drv.seen, {
    thre_iir1: IIR.THRI, // enabling THRI with THR empty raises it at once …
    thre_iir2: IIR.THRI, // … and again after IER was cleared and set (a real 16550 re-asserts)
    txen_lsr: LSR.THRE | LSR.TEMT,
    txen_iir: IIR.THRI,
  });
  // Only the TXEN test, after OUT2 was raised, reached the interrupt controller: high, then low at the IIR read.
  t.deepEqual(irq, [true, false]);
  serial.write(UART.LCR, LCR.WLEN8 | LCR.DLAB);
  t.is(serial.read(UART.DLL) | (serial.read(UART.DLM) << 8), 1, 'divisor 1: 115200 baud');
  serial.write(UART.LCR, LCR.WLEN8);
  t.is(serial.read(UART.IER), IER.RLSI | IER.RDI | IER.MSI);
  t.is(serial.read(UART.MCR), MCR.OUT2 | MCR.DTR | MCR.RTS);
  t.is(serial.read(UART.IIR), 0xc1, 'FIFOs on, nothing pending');
  t.is(serial.output, '');
});

test('the console write paths: early (THRE before each byte) and with the FIFO (16 bytes per THRE), "\\n" as "\\r\\n"', (t) => {
  const { serial } = uart();
  const drv = new Linux8250(serial);
  drv.configPort();
  drv.consoleWrite('Linux version 6.12.0 (early console)\n');
  drv.startup();
  const before = drv.port.log.length;
  drv.consoleWrite('Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled\nconsole [ttyS0] enabled\n');
  t.is(
    serial.output,
    'Linux version 6.12.0 (early console)\r\n' + 'Serial: 8250/16550 driver, 4 ports, IRQ sharing enabled\r\nconsole [ttyS0] enabled\r\n',
  );
  // The FIFO path polls LSR once per 16 bytes, not once per byte.
  const log = drv.port.log.slice(before);
  const lsrPolls = log.filter((a) => a.dir === 'in' && a.reg === UART.LSR).length;
  const txBytes = log.filter((a) => a.dir === 'out' && a.reg === UART.TX).length;
  t.is(txBytes, 82);
  t.is(lsrPolls, Math.ceil(82 / 16) + 1);
  t.is(serial.read(UART.IER), IER.RLSI | IER.RDI | IER.MSI, 'IER restored after the write');
});

test('interrupt-driven tty: THRE interrupts drain the transmit queue 16 at a time; received bytes raise RDI or the timeout', (t) => {
  const { serial, irq } = uart();
  const drv = new Linux8250(serial);
  drv.configPort();
  drv.startup();
  irq.length = 0;
  const handle = (): number => {
    let rounds = 0;
    while (serial.irqLevel) {
      t.true(drv.handleIrq(), 'the line is high only with an interrupt pending');
      rounds++;
    }
    return rounds;
  };
  const text = 'login: the quick brown fox jumps over it\n';
  drv.ttyWrite(text);
  t.is(irq[0], true, 'setting IER.THRI raised the line');
  t.is(handle(), Math.ceil(text.length / 16));
  t.is(serial.output, text);
  t.false(serial.irqLevel);
  t.is(serial.read(UART.IER) & IER.THRI, 0, 'stop_tx cleared THRI');

  irq.length = 0;
  t.is(serial.receive('abc'), 3);
  t.deepEqual(irq, [true]);
  t.is(serial.read(UART.IIR), 0xc0 | IIR.RX_TIMEOUT, '3 bytes, below the 8-byte trigger: the character timeout');
  t.is(handle(), 1);
  t.is(drv.received, 'abc');

  const burst = 'abcdefghijklmnopqrst';
  t.is(serial.receive(burst), 16, 'the FIFO takes 16');
  t.is(serial.read(UART.IIR), 0xc0 | IIR.RDI, 'at or above the trigger: received data available');
  handle();
  t.is(serial.receive(burst.slice(16)), 4);
  handle();
  t.is(drv.received, 'abc' + burst);

  // DCD drops: a modem status interrupt (IER.MSI is on without CLOCAL); reading MSR acknowledges it.
  serial.setModemInputs(MSR.CTS | MSR.DSR);
  t.is(serial.read(UART.IIR), 0xc0 | IIR.MSI);
  t.true(serial.irqLevel);
  t.is(handle(), 1);
  t.false(serial.irqLevel);
});

test('registers after reset: IIR 0x01, LSR 0x60, MSR 0xB0 (CTS, DSR, DCD from a terminal that is there), the rest 0', (t) => {
  const s = new SerialPort();
  t.is(s.base, 0x3f8);
  t.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 7].map((r) => s.read(r)),
    [0, 0, 0x01, 0, 0, 0x60, 0xb0, 0],
  );
  t.is(new SerialPort(0x2f8).base, 0x2f8);
  t.is(new SerialPort({ base: 0x3e8 }).base, 0x3e8);
});

test('DLAB: offsets 0 and 1 are the divisor latch; its bytes are not transmitted and IER is untouched', (t) => {
  const s = new SerialPort();
  s.write(UART.IER, IER.RDI);
  s.write(UART.LCR, LCR.DLAB | LCR.WLEN8);
  s.write(UART.DLL, 0x34);
  s.write(UART.DLM, 0x12);
  t.is(s.read(UART.DLL), 0x34);
  t.is(s.read(UART.DLM), 0x12);
  t.is(s.output, '');
  s.write(UART.LCR, LCR.WLEN8);
  t.is(s.read(UART.IER), IER.RDI);
  s.write(UART.TX, 0x41);
  t.is(s.output, 'A');
  s.write(UART.IER, 0xff);
  t.is(s.read(UART.IER), 0x0f, 'a 16550A has four enable bits');
  s.write(UART.MCR, 0xff);
  t.is(s.read(UART.MCR), 0x1f);
  s.write(UART.SCR, 0x5a);
  t.is(s.read(UART.SCR), 0x5a);
  s.write(UART.LSR, 0);
  s.write(UART.MSR, 0);
  t.is(s.read(UART.LSR), 0x60, 'LSR and MSR ignore writes');
});

test('FCR: FIFOs on and off (each empties them), RX clear, trigger levels 1/4/8/14, one byte of room without FIFOs', (t) => {
  const s = new SerialPort();
  s.write(UART.IER, IER.RDI);
  t.is(s.receive('xy'), 1, 'no FIFO: the holding register only');
  t.is(s.read(UART.IIR), IIR.RDI);
  s.write(UART.FCR, FCR.ENABLE_FIFO | 0xc0);
  t.is(s.read(UART.LSR) & LSR.DR, 0, 'enabling the FIFOs emptied them');
  t.is(s.receive('0123456789abc'), 13);
  t.is(s.read(UART.IIR), 0xc0 | IIR.RX_TIMEOUT, '13 < 14');
  t.is(s.receive('d'), 1);
  t.is(s.read(UART.IIR), 0xc0 | IIR.RDI, '14 bytes: the trigger');
  t.is(s.rxSpace, 2);
  for (const [bits, level] of [
    [0x00, 1],
    [0x40, 4],
    [0x80, 8],
  ] as const) {
    s.write(UART.FCR, FCR.ENABLE_FIFO | FCR.CLEAR_RCVR | bits);
    s.receive('x'.repeat(level - 1));
    t.is(s.read(UART.IIR), level === 1 ? 0xc1 : 0xc0 | IIR.RX_TIMEOUT, `below ${level}`);
    s.receive('x');
    t.is(s.read(UART.IIR), 0xc0 | IIR.RDI, `at ${level}`);
  }
  t.is(s.read(UART.RX), 0x78);
  s.write(UART.FCR, 0);
  t.is(s.read(UART.IIR), IIR.NO_INT, 'FIFOs off: emptied, IIR bits 7:6 clear');
  t.is(s.read(UART.RX), 0, 'an empty receiver reads 0');
});

test('loopback: MSR follows MCR, bytes come back instead of going out, a full FIFO overruns (LSR.OE, RLSI first), no IRQ', (t) => {
  const { serial: s, irq } = uart();
  s.write(UART.IER, IER.RDI | IER.RLSI | IER.THRI);
  s.write(UART.MCR, MCR.LOOP | MCR.OUT2);
  t.is(s.read(UART.MSR) & 0xf0, MSR.DCD);
  s.write(UART.MCR, MCR.LOOP | MCR.DTR | MCR.RTS | MCR.OUT1 | MCR.OUT2);
  t.is(s.read(UART.MSR), 0xf0 | MSR.DCTS | MSR.DDSR, 'CTS, DSR, RI and DCD, and the deltas of CTS and DSR');
  t.is(s.read(UART.MSR), 0xf0, 'reading MSR cleared the deltas');
  s.write(UART.MCR, MCR.LOOP | MCR.OUT2);
  t.is(s.read(UART.MSR), MSR.DCD | MSR.DCTS | MSR.DDSR | MSR.TERI, 'RI fell: TERI');
  t.is(s.receive('no'), 0, 'the line is disconnected in loopback');
  s.write(UART.FCR, FCR.ENABLE_FIFO);
  for (let i = 0; i < 17; i++) s.write(UART.TX, 0x30 + i);
  t.is(s.output, '');
  t.is(s.read(UART.IIR), 0xc0 | IIR.RLSI, 'the overrun outranks the data');
  t.is(s.read(UART.LSR), LSR.DR | LSR.OE | LSR.THRE | LSR.TEMT);
  t.is(s.read(UART.LSR), LSR.DR | LSR.THRE | LSR.TEMT, 'reading LSR cleared OE');
  t.is(s.read(UART.IIR), 0xc0 | IIR.RDI);
  const got: number[] = [];
  while (s.read(UART.LSR) & LSR.DR) got.push(s.read(UART.RX));
  t.deepEqual(
    got,
    Array.from({ length: 16 }, (_, i) => 0x30 + i),
    'the 17th byte was lost',
  );
  t.deepEqual(irq, [], 'pending interrupts never reach the line in loopback');
  s.write(UART.MCR, MCR.OUT2);
  t.deepEqual(irq, [true], 'out of loopback with OUT2: THRE reaches the line');
  s.write(UART.FCR, 0);
  s.write(UART.MCR, MCR.LOOP | MCR.OUT2);
  s.write(UART.TX, 1);
  s.write(UART.TX, 2);
  t.is(s.read(UART.LSR), LSR.DR | LSR.OE | LSR.THRE | LSR.TEMT);
  t.is(s.read(UART.RX), 2, 'without FIFOs the holding register is overwritten');
});

test('the IRQ output: THRE on enabling THRI and after each THR write, acknowledged by IIR, gated by MCR.OUT2', (t) => {
  const { serial: s, irq } = uart();
  s.write(UART.IER, IER.THRI);
  t.deepEqual(irq, [], 'OUT2 clear: the PC gates the line');
  s.write(UART.MCR, MCR.OUT2);
  t.deepEqual(irq, [true]);
  t.true(s.irqLevel);
  t.is(s.read(UART.IIR), IIR.THRI);
  t.deepEqual(irq, [true, false], 'reading IIR acknowledged THRE');
  t.is(s.read(UART.IIR), IIR.NO_INT);
  s.write(UART.TX, 0x41);
  t.deepEqual(irq, [true, false, true], 'the byte left at once: THR empty again');
  s.write(UART.MCR, 0);
  t.deepEqual(irq, [true, false, true, false]);
  s.write(UART.IER, 0);
  s.write(UART.MCR, MCR.OUT2);
  t.is(irq.length, 4, 'nothing enabled, nothing raised');
  s.write(UART.IER, IER.MSI);
  s.setModemInputs(MSR.CTS | MSR.DSR | MSR.DCD | MSR.RI);
  t.is(irq.length, 4, 'RI rising sets no delta');
  s.setModemInputs(MSR.CTS | MSR.DSR | MSR.DCD);
  t.is(irq.at(-1), true, 'RI falling: TERI, a modem status interrupt');
  t.is(s.read(UART.MSR), MSR.CTS | MSR.DSR | MSR.DCD | MSR.TERI);
  t.is(irq.at(-1), false);
});

test('handle(): byte-wide registers for wider accesses and string I/O, other ports left alone, open bus past the UART', (t) => {
  const s = new SerialPort();
  type IoExit = Extract<VcpuExit, { reason: 'io' }>;
  const io = (direction: 'in' | 'out', port: number, size: number, count: number, data = new Uint8Array(size * count)): IoExit => ({
    reason: 'io',
    direction,
    size,
    port,
    count,
    data,
  });
  const word = io('in', 0x3fc, 2, 1);
  t.true(s.handle(word));
  t.deepEqual([...word.data], [0, 0x60], 'MCR then LSR');
  const rep = io('out', 0x3f8, 1, 3, Uint8Array.from([0x61, 0x62, 0x63]));
  t.true(s.handle(rep));
  t.is(s.output, 'abc', 'rep outsb: one THR write per element');
  const edge = io('in', 0x3ff, 2, 1);
  s.write(UART.SCR, 0x11);
  t.true(s.handle(edge));
  t.deepEqual([...edge.data], [0x11, 0xff]);
  t.false(s.handle(io('out', 0x80, 1, 1)));
  t.false(s.handle(io('in', 0x3f7, 1, 1)));
  t.false(s.handle({ reason: 'hlt' }));
  const bytes: number[] = [];
  s.onByte = (b) => bytes.push(b);
  s.handle(io('out', 0x3f8, 1, 1, Uint8Array.of(0x7a)));
  t.deepEqual(bytes, [0x7a]);
});

test('saveState()/restoreState(): registers, divisor, FIFO contents and the IRQ level carry over; the older two-field state still loads', (t) => {
  const a = new SerialPort();
  a.write(UART.LCR, LCR.DLAB);
  a.write(UART.DLL, 3);
  a.write(UART.LCR, LCR.WLEN8);
  a.write(UART.FCR, FCR.ENABLE_FIFO | 0x40);
  a.write(UART.IER, IER.RDI);
  a.write(UART.MCR, MCR.OUT2 | MCR.DTR);
  a.write(UART.SCR, 0x99);
  a.write(UART.TX, 0x21);
  a.receive('hello');
  const state = JSON.parse(JSON.stringify(a.saveState())) as ReturnType<SerialPort['saveState']>;
  const { serial: b, irq } = uart();
  b.restoreState(state);
  t.deepEqual(irq, [true], 'the new VMM re-raises the pending RDI');
  t.is(b.output, '!');
  t.is(b.read(UART.IIR), 0xc0 | IIR.RDI);
  t.is(b.read(UART.SCR), 0x99);
  t.is(b.read(UART.MCR), MCR.OUT2 | MCR.DTR);
  b.write(UART.LCR, LCR.DLAB);
  t.is(b.read(UART.DLL), 3);
  b.write(UART.LCR, 0);
  t.is(String.fromCharCode(...[0, 1, 2, 3, 4].map(() => b.read(UART.RX))), 'hello');
  const c = new SerialPort();
  c.restoreState({ output: [0x6f, 0x6b], scratch: 7 });
  t.is(c.output, 'ok');
  t.is(c.read(UART.SCR), 7);
  t.is(c.read(UART.IIR), IIR.NO_INT);
});

test('bad input: offsets, values, modem bits, the base port', (t) => {
  const s = new SerialPort();
  t.throws(() => s.read(8), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.write(0, 256), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.write(-1, 0), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => s.setModemInputs(MSR.DCTS), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => s.receive([0x100]), { code: 'ERR_OUT_OF_RANGE' });
  t.throws(() => new SerialPort(0x10000), { code: 'ERR_OUT_OF_RANGE' });
});

test('kvmIrqLine(): the UART drives KVM_IRQ_LINE on its line; a level-triggered PIC line follows it both ways (mock kernel)', (t) => {
  const kvm = Kvm.open({ backend: new MockHost() });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  vm.createIrqchip();
  const m = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
  if (m.chip_id !== 2) vm.setIrqchip({ chip_id: 0, pic: { ...m.pic, elcr: 0x10 } }); // IRQ 4 level-triggered
  const irr = () => {
    const p = vm.getIrqchip(KVM_IRQCHIP.PIC_MASTER);
    return p.chip_id === 2 ? -1 : p.pic.irr & 0x10;
  };
  const serial = new SerialPort({ irq: kvmIrqLine(vm, 4) });
  serial.write(UART.FCR, FCR.ENABLE_FIFO);
  serial.write(UART.MCR, MCR.OUT2);
  serial.write(UART.IER, IER.RDI);
  t.is(irr(), 0);
  t.is(serial.receive('ab'), 2);
  t.is(irr(), 0x10, 'received data: the line is up');
  serial.read(UART.RX);
  t.is(irr(), 0x10, 'one byte still waits');
  serial.read(UART.RX);
  t.is(irr(), 0, 'the FIFO is empty: the line is down');
  t.throws(() => kvmIrqLine(vm, -1), { code: 'ERR_OUT_OF_RANGE' });
  // Without an in-kernel irqchip the kernel refuses the line (ENXIO), and the UART's write says so.
  const plain = kvm.createVm();
  t.teardown(() => plain.close());
  const orphan = new SerialPort({ irq: kvmIrqLine(plain, 4) });
  orphan.write(UART.MCR, MCR.OUT2);
  t.throws(() => orphan.write(UART.IER, IER.THRI), { code: 'ENXIO' });
});

/**
 * A 16550A UART for port-I/O exits, as Linux's 8250 driver (drivers/tty/serial/8250/8250_port.c)
 * probes and drives it: the divisor latch under LCR.DLAB, IER, IIR with the FIFO bits and the
 * interrupt priorities, FCR with 16-byte FIFOs and receive trigger levels, LCR, MCR with loopback
 * (MSR follows MCR, transmitted bytes come back as received ones), LSR, MSR with delta bits, SCR.
 * Transmission takes no time: a written byte leaves at once, so THR and the shift register are always
 * empty (LSR.THRE and TEMT) and every write re-arms the THRE interrupt.
 *
 * Its interrupt output goes to `irq`, as a level, gated by MCR.OUT2 the way PC serial ports gate it
 * (hence Linux's "most PC uarts need OUT2 raised to enable interrupts"); a VMM wires it to its
 * interrupt controller, e.g. KVM_IRQ_LINE on IRQ 4 for COM1.
 *
 * ```ts
 * import { Kvm, NativeBackend, SerialPort, helloProgram, loadProgram, type VcpuExit } from 'kvm-sev';
 *
 * using kvm = Kvm.open({ backend: new NativeBackend() });
 * using vm = kvm.createVm();
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const vcpu = vm.createVcpu(0);
 * loadProgram(mem, vcpu, helloProgram('hi\n'));
 * // A VMM with an interrupt controller raises and lowers COM1's IRQ 4 here (KVM_IRQ_LINE).
 * const serial = new SerialPort({ irq: (level) => console.log('IRQ 4', level ? 'raised' : 'lowered') });
 * let exit: VcpuExit;
 * while (serial.handle((exit = await vcpu.run())));
 * serial.receive('input for the guest\n'); // what the guest's next RBR reads return
 * console.log(JSON.stringify(serial.output), exit.reason); // "hi\n" hlt
 * ```
 */
import type { VcpuExit } from '../../kvm/exits.js';
import type { Vm } from '../../kvm/vm.js';
import { invalidArgValue, outOfRange } from '../../uapi/errors.js';
import { COM1 } from './programs.js';
import { FCR, FIFO_SIZE, IER, IIR, LCR, LSR, MCR, MSR, RX_TRIGGER, UART } from './serial-registers.js';

/**
 * A {@link SerialPortOptions.irq} callback that drives line `irq` of the VM's in-kernel irqchip
 * (KVM_CREATE_IRQCHIP) with KVM_IRQ_LINE: high while the UART has an enabled interrupt pending and
 * MCR.OUT2 is set, low otherwise. On the PIC's default edge-triggered lines each rise is one
 * interrupt; a guest that EOIs while its UART still wants service gets it again at the next rise.
 *
 * ```ts
 * import { Kvm, SerialPort, kvmIrqLine } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 *
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using vm = kvm.createVm();
 * vm.createIrqchip();
 * const com1 = new SerialPort({ irq: kvmIrqLine(vm, 4) });
 * com1.write(4, 0x08); // MCR.OUT2 and IER.RDI: what a guest's driver writes (here as if by port I/O exits)
 * com1.write(1, 0x01);
 * com1.receive('x'); // a byte arrives: IRQ 4 rises
 * const pic = vm.getIrqchip(0);
 * console.log(com1.irqLevel, pic.chip_id === 0 && pic.pic.irr === 0x10); // true true
 * ```
 */
export function kvmIrqLine(vm: Pick<Vm, 'irqLine'>, irq: number): (level: boolean) => void {
  if (!Number.isInteger(irq) || irq < 0) throw outOfRange('irq', '>= 0', irq);
  return (level) => vm.irqLine(irq, level ? 1 : 0);
}

export interface SerialPortOptions {
  /** The first of the eight I/O ports (default 0x3f8, COM1). */
  base?: number;
  /** Called with the new level whenever the interrupt output changes. */
  irq?: (level: boolean) => void;
}

/** Device state for a VMM handoff (JSON-safe). */
export interface SerialState {
  output: number[];
  scratch: number;
  ier?: number;
  lcr?: number;
  mcr?: number;
  divisor?: number;
  fcr?: number;
  rx?: number[];
  lsrErrors?: number;
  thrPending?: boolean;
  msrDelta?: number;
  modemInputs?: number;
}

export class SerialPort {
  readonly base: number;
  /** Called with each byte the guest transmits. */
  onByte?: (b: number) => void;
  private readonly irq: ((level: boolean) => void) | undefined;
  private out: number[] = [];
  private ier = 0;
  private lcr = 0;
  private mcr = 0;
  private scr = 0;
  /** 9600 baud from the 1.8432 MHz clock, as a PC BIOS leaves it. */
  private divisor = 12;
  /** FCR as last written with FIFOs on (bits 7:6 the trigger, bit 3 DMA mode), or 0 with them off. */
  private fcr = 0;
  private rx: number[] = [];
  /** OE (and the other error bits, never set here): cleared by reading LSR. */
  private lsrErrors = 0;
  /** The THRE interrupt latch: set when THR empties or THRI is enabled, cleared by an IIR read that reports it or a THR write. */
  private thrPending = false;
  private msrDelta = 0;
  /** CTS, DSR, RI, DCD from the other end of the line (MSR bits 7:4): a terminal that is there and ready. */
  private modemInputs = MSR.CTS | MSR.DSR | MSR.DCD;
  private level = false;

  constructor(options: number | SerialPortOptions = {}) {
    const o = typeof options === 'number' ? { base: options } : options;
    const base = o.base ?? COM1;
    if (!Number.isInteger(base) || base < 0 || base > 0xfff8) throw outOfRange('base', '>= 0 && <= 0xfff8', base);
    this.base = base;
    this.irq = o.irq;
  }

  /** Handles an I/O exit if it is ours (one register per byte of each access); returns false otherwise. */
  handle(exit: VcpuExit): boolean {
    if (exit.reason !== 'io' || exit.port < this.base || exit.port > this.base + 7) return false;
    for (let i = 0; i < exit.count; i++) {
      for (let b = 0; b < exit.size; b++) {
        const at = i * exit.size + b;
        const reg = exit.port + b - this.base;
        if (exit.direction === 'out') {
          if (reg <= 7) this.write(reg, exit.data[at]!);
        } else exit.data[at] = reg <= 7 ? this.read(reg) : 0xff; // past the UART: nothing drives the bus
      }
    }
    return true;
  }

  /** One register read at `offset` (0–7), with its side effects. */
  read(offset: number): number {
    const v = this.readReg(this.checkOffset(offset));
    this.sync();
    return v;
  }

  /** One register write at `offset` (0–7). */
  write(offset: number, value: number): void {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) throw outOfRange('value', '>= 0 && <= 255', value);
    this.writeReg(this.checkOffset(offset), value);
    this.sync();
  }

  /**
   * Bytes arriving on the line for the guest: as many as the receive FIFO (one byte with FIFOs off)
   * has room for; returns how many it took, so the caller can offer the rest once the guest reads.
   * In loopback mode the line is disconnected and nothing is taken.
   */
  receive(data: string | ArrayLike<number>): number {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    let n = 0;
    if (!(this.mcr & MCR.LOOP)) {
      for (; n < bytes.length && this.rx.length < this.capacity(); n++) {
        const b = bytes[n]!;
        if (!Number.isInteger(b) || b < 0 || b > 0xff) throw outOfRange('data', 'bytes (0–255)', b);
        this.rx.push(b);
      }
    }
    this.sync();
    return n;
  }

  /** Room in the receive FIFO. */
  get rxSpace(): number {
    return this.capacity() - this.rx.length;
  }

  /** Sets the modem inputs (MSR CTS, DSR, RI, DCD bits) the other end drives; changes set the delta bits. */
  setModemInputs(msrBits: number): void {
    if (!Number.isInteger(msrBits) || (msrBits & ~0xf0) !== 0) throw invalidArgValue('msrBits', msrBits, 'must only have MSR bits 7:4');
    const before = this.inputs();
    this.modemInputs = msrBits;
    this.delta(before, this.inputs());
    this.sync();
  }

  /** The interrupt output (what `irq` was last called with). */
  get irqLevel(): boolean {
    return this.level;
  }

  /** Everything transmitted so far. */
  get output(): string {
    return Buffer.from(this.out).toString('latin1');
  }

  /** Device state for a VMM handoff. */
  saveState(): SerialState {
    return {
      output: [...this.out],
      scratch: this.scr,
      ier: this.ier,
      lcr: this.lcr,
      mcr: this.mcr,
      divisor: this.divisor,
      fcr: this.fcr,
      rx: [...this.rx],
      lsrErrors: this.lsrErrors,
      thrPending: this.thrPending,
      msrDelta: this.msrDelta,
      modemInputs: this.modemInputs,
    };
  }

  /** Restores a saved state (one with only `output` and `scratch` leaves the rest at reset values); re-drives the IRQ. */
  restoreState(s: SerialState): void {
    this.out = [...s.output];
    this.scr = s.scratch & 0xff;
    this.ier = (s.ier ?? 0) & 0x0f;
    this.lcr = (s.lcr ?? 0) & 0xff;
    this.mcr = (s.mcr ?? 0) & 0x1f;
    this.divisor = (s.divisor ?? 12) & 0xffff;
    this.fcr = (s.fcr ?? 0) & (FCR.ENABLE_FIFO | FCR.DMA_SELECT | FCR.TRIGGER_MASK);
    this.rx = (s.rx ?? []).slice(0, this.capacity()).map((b) => b & 0xff);
    this.lsrErrors = (s.lsrErrors ?? 0) & (LSR.OE | LSR.PE | LSR.FE | LSR.BI);
    this.thrPending = s.thrPending ?? false;
    this.msrDelta = (s.msrDelta ?? 0) & 0x0f;
    this.modemInputs = (s.modemInputs ?? MSR.CTS | MSR.DSR | MSR.DCD) & 0xf0;
    this.sync();
  }

  // ---- registers ----

  private checkOffset(offset: number): number {
    if (!Number.isInteger(offset) || offset < 0 || offset > 7) throw outOfRange('offset', '>= 0 && <= 7', offset);
    return offset;
  }

  private readReg(reg: number): number {
    const dlab = (this.lcr & LCR.DLAB) !== 0;
    switch (reg) {
      case UART.RX:
        if (dlab) return this.divisor & 0xff;
        return this.rx.shift() ?? 0;
      case UART.IER:
        return dlab ? this.divisor >> 8 : this.ier;
      case UART.IIR: {
        const id = this.pending();
        if (id === IIR.THRI) this.thrPending = false; // reading IIR with THRI showing acknowledges it
        return id | (this.fifoOn() ? IIR.FIFO_ENABLED : 0);
      }
      case UART.LCR:
        return this.lcr;
      case UART.MCR:
        return this.mcr;
      case UART.LSR: {
        const v = (this.rx.length > 0 ? LSR.DR : 0) | this.lsrErrors | LSR.THRE | LSR.TEMT;
        this.lsrErrors = 0;
        return v;
      }
      case UART.MSR: {
        const v = this.inputs() | this.msrDelta;
        this.msrDelta = 0;
        return v;
      }
      default:
        return this.scr;
    }
  }

  private writeReg(reg: number, v: number): void {
    const dlab = (this.lcr & LCR.DLAB) !== 0;
    switch (reg) {
      case UART.TX:
        if (dlab) this.divisor = (this.divisor & 0xff00) | v;
        else this.transmit(v);
        return;
      case UART.IER:
        if (dlab) {
          this.divisor = (this.divisor & 0xff) | (v << 8);
          return;
        }
        // Enabling THRI while THR is empty (always, here) raises the interrupt at once; Linux's
        // serial8250_do_startup() checks exactly that (UART_BUG_THRE otherwise).
        if (v & IER.THRI && !(this.ier & IER.THRI)) this.thrPending = true;
        this.ier = v & 0x0f; // bits 7:4 do not exist on a 16550A and read 0
        return;
      case UART.FCR:
        this.writeFcr(v);
        return;
      case UART.LCR:
        this.lcr = v;
        return;
      case UART.MCR: {
        const before = this.inputs();
        this.mcr = v & 0x1f; // bits 7:5 read 0 on a 16550A
        this.delta(before, this.inputs());
        return;
      }
      case UART.SCR:
        this.scr = v;
        return;
      default:
        return; // LSR and MSR are read-only
    }
  }

  private writeFcr(v: number): void {
    const on = (v & FCR.ENABLE_FIFO) !== 0;
    // Turning the FIFOs on or off empties them; the other bits are written only with bit 0 set.
    if (on !== this.fifoOn()) this.rx = [];
    if (!on) {
      this.fcr = 0;
      return;
    }
    if (v & FCR.CLEAR_RCVR) this.rx = [];
    // CLEAR_XMIT: the transmitter is always empty already.
    this.fcr = v & (FCR.ENABLE_FIFO | FCR.DMA_SELECT | FCR.TRIGGER_MASK);
  }

  private transmit(v: number): void {
    if (this.mcr & MCR.LOOP) {
      // Loopback: the transmitter's output is the receiver's input.
      if (this.rx.length < this.capacity()) this.rx.push(v);
      else {
        this.lsrErrors |= LSR.OE;
        if (!this.fifoOn()) this.rx[0] = v; // the holding register is overwritten; a full FIFO keeps its bytes
      }
    } else {
      this.out.push(v);
      this.onByte?.(v);
    }
    this.thrPending = true; // the byte left at once: THR is empty again
  }

  // ---- derived state ----

  private fifoOn(): boolean {
    return (this.fcr & FCR.ENABLE_FIFO) !== 0;
  }
  private capacity(): number {
    return this.fifoOn() ? FIFO_SIZE : 1;
  }

  /** MSR bits 7:4: the modem inputs, or in loopback MCR's outputs wired back (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD). */
  private inputs(): number {
    if (!(this.mcr & MCR.LOOP)) return this.modemInputs;
    const m = this.mcr;
    return (m & MCR.RTS ? MSR.CTS : 0) | (m & MCR.DTR ? MSR.DSR : 0) | (m & MCR.OUT1 ? MSR.RI : 0) | (m & MCR.OUT2 ? MSR.DCD : 0);
  }

  private delta(before: number, after: number): void {
    const changed = before ^ after;
    if (changed & MSR.CTS) this.msrDelta |= MSR.DCTS;
    if (changed & MSR.DSR) this.msrDelta |= MSR.DDSR;
    if (changed & MSR.DCD) this.msrDelta |= MSR.DDCD;
    if (before & MSR.RI && !(after & MSR.RI)) this.msrDelta |= MSR.TERI; // the trailing edge of RI
  }

  /** The highest-priority pending interrupt the IER enables, as an IIR id. */
  private pending(): number {
    if (this.ier & IER.RLSI && this.lsrErrors) return IIR.RLSI;
    if (this.ier & IER.RDI && this.rx.length > 0) {
      if (!this.fifoOn() || this.rx.length >= RX_TRIGGER[this.fcr >> 6]!) return IIR.RDI;
      // Below the trigger level the character timeout fires; with no line time to wait for, at once.
      return IIR.RX_TIMEOUT;
    }
    if (this.ier & IER.THRI && this.thrPending) return IIR.THRI;
    if (this.ier & IER.MSI && this.msrDelta) return IIR.MSI;
    return IIR.NO_INT;
  }

  /** Drives `irq` when the gated interrupt output changes: pending, MCR.OUT2 set, not in loopback. */
  private sync(): void {
    const level = this.pending() !== IIR.NO_INT && (this.mcr & (MCR.OUT2 | MCR.LOOP)) === MCR.OUT2;
    if (level === this.level) return;
    this.level = level;
    this.irq?.(level);
  }
}

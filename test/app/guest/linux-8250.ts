/**
 * The register accesses Linux's 8250 driver makes, replayed step for step against a UART reached
 * through port-I/O exits: drivers/tty/serial/8250/8250_port.c autoconfig() with
 * autoconfig_16550a() as CONFIG_SERIAL_8250_16550A_VARIANTS runs it (EFR probes, NatSemi, TI16750,
 * XScale UUE, size_fifo()), serial8250_clear_fifos(), serial8250_do_startup() (with its THRE and
 * TXEN tests), serial8250_do_set_termios(), serial8250_console_write() (early putchar and FIFO
 * paths) and serial8250_handle_irq() (rx_chars, modem_status, tx_chars). Each function returns
 * what Linux concludes from what it read, so a test can check the conclusions.
 */
import type { VcpuExit } from '../../../lib/kvm/exits.js';
import { FCR, IER, IIR, LCR, LSR, MCR, MSR, UART } from '../../../lib/app/guest/serial-registers.js';

/** The register at offset 2 when LCR is 0xBF (EFR on chips that have one; FCR/IIR on a 16550A). */
const EFR = 2;
const LCR_CONF_MODE_A = LCR.DLAB;
const LCR_CONF_MODE_B = 0xbf;
const IIR_FIFO_ENABLED_16750 = 0xe0;
const FCR7_64BYTE = 0x20;
const IER_UUE = 0x40;
const IER_ALL_INTR = 0x0f;

/** The uart_config[] entries the probe can land on that matter here. */
const CONFIG = {
  unknown: { fifo: 1, txLoad: 1, fcr: 0 },
  '8250': { fifo: 1, txLoad: 1, fcr: 0 },
  '16450': { fifo: 1, txLoad: 1, fcr: 0 },
  '16550': { fifo: 1, txLoad: 1, fcr: 0 },
  '16550A': { fifo: 16, txLoad: 16, fcr: FCR.ENABLE_FIFO | 0x80 /* R_TRIG_10: 8 bytes */ },
  other: { fifo: 0, txLoad: 0, fcr: 0 },
} as const;

/** What a `handle(exit)` device looks like to the driver. */
export interface IoDevice {
  handle(exit: VcpuExit): boolean;
}

/** inb/outb at base + offset, as port-I/O exits; every access is logged. */
export class Port {
  readonly log: { dir: 'in' | 'out'; reg: number; value: number }[] = [];
  constructor(
    private readonly dev: IoDevice,
    readonly base = 0x3f8,
  ) {}
  in(reg: number): number {
    const data = new Uint8Array(1);
    if (!this.dev.handle({ reason: 'io', direction: 'in', size: 1, port: this.base + reg, count: 1, data }))
      throw new Error('not the UART');
    this.log.push({ dir: 'in', reg, value: data[0]! });
    return data[0]!;
  }
  out(reg: number, value: number): void {
    if (!this.dev.handle({ reason: 'io', direction: 'out', size: 1, port: this.base + reg, count: 1, data: Uint8Array.of(value) }))
      throw new Error('not the UART');
    this.log.push({ dir: 'out', reg, value });
  }
}

export interface Probe {
  /** A uart_config[] name ('16550A'), or what a variant probe matched. */
  type: string;
  fifosize: number;
  txLoadsz: number;
  /** Why autoconfig() gave up, if it did. */
  failed?: string;
  /** Intermediate readings, for the test to show. */
  seen: Record<string, number>;
}

/** size_fifo(): bytes a loopback write of 256 leaves in the receive FIFO. */
export function sizeFifo(p: Port, seen: Record<string, number>): number {
  const oldLcr = p.in(UART.LCR);
  p.out(UART.LCR, 0);
  const oldFcr = p.in(UART.FCR); // reads the IIR: Linux writes it back as the FCR afterwards
  const oldMcr = p.in(UART.MCR);
  p.out(UART.FCR, FCR.ENABLE_FIFO | FCR.CLEAR_RCVR | FCR.CLEAR_XMIT);
  p.out(UART.MCR, MCR.LOOP);
  p.out(UART.LCR, LCR_CONF_MODE_A);
  const oldDl = p.in(UART.DLL) | (p.in(UART.DLM) << 8);
  p.out(UART.DLL, 1);
  p.out(UART.DLM, 0);
  p.out(UART.LCR, LCR.WLEN8);
  for (let c = 0; c < 256; c++) p.out(UART.TX, c);
  let count = 0;
  for (; p.in(UART.LSR) & LSR.DR && count < 256; count++) p.in(UART.RX);
  p.out(UART.FCR, oldFcr);
  p.out(UART.MCR, oldMcr);
  p.out(UART.LCR, LCR_CONF_MODE_A);
  p.out(UART.DLL, oldDl & 0xff);
  p.out(UART.DLM, oldDl >> 8);
  p.out(UART.LCR, oldLcr);
  seen['size_fifo'] = count;
  return count;
}

/** autoconfig_read_divisor_id(). */
function readDivisorId(p: Port): number {
  const oldLcr = p.in(UART.LCR);
  p.out(UART.LCR, LCR_CONF_MODE_A);
  const old = p.in(UART.DLL) | (p.in(UART.DLM) << 8);
  p.out(UART.DLL, 0);
  p.out(UART.DLM, 0);
  const id = p.in(UART.DLL) | (p.in(UART.DLM) << 8);
  p.out(UART.DLL, old & 0xff);
  p.out(UART.DLM, old >> 8);
  p.out(UART.LCR, oldLcr);
  return id;
}

/** autoconfig_16550a() with the variant probes. */
function autoconfig16550a(p: Port, seen: Record<string, number>): string {
  let type = '16550A';
  // An EFR under DLAB: only ST16C650V1 UARTs.
  p.out(UART.LCR, LCR_CONF_MODE_A);
  seen['efr_dlab'] = p.in(EFR);
  if (seen['efr_dlab'] === 0) return 'ST16650/Motorola';
  // An EFR under LCR = 0xBF.
  p.out(UART.LCR, LCR_CONF_MODE_B);
  seen['efr_bf'] = p.in(EFR);
  if (seen['efr_bf'] === 0 && !(readDivisorId(p) === 0x0201 && sizeFifo(p, seen) === 16)) return 'EFR (ST16650V2/XR16C850/16C950)';
  // National Semiconductor SuperIO: does EXCR1 (bank 2, offset 2) follow MCR.LOOP?
  p.out(UART.LCR, 0);
  const s1 = p.in(UART.MCR);
  p.out(UART.LCR, 0xe0);
  let s2 = p.in(0x02);
  if (!((s2 ^ s1) & MCR.LOOP)) {
    p.out(UART.LCR, 0);
    p.out(UART.MCR, s1 ^ MCR.LOOP);
    p.out(UART.LCR, 0xe0);
    s2 = p.in(0x02);
    p.out(UART.LCR, 0);
    p.out(UART.MCR, s1);
    if ((s2 ^ s1) & MCR.LOOP) return 'NS16550A';
  }
  // TI16750: IIR bit 5 with the 64-byte FIFO asked for under DLAB.
  p.out(UART.LCR, 0);
  p.out(UART.FCR, FCR.ENABLE_FIFO | FCR7_64BYTE);
  const st1 = p.in(UART.IIR) & IIR_FIFO_ENABLED_16750;
  p.out(UART.FCR, FCR.ENABLE_FIFO);
  p.out(UART.LCR, LCR_CONF_MODE_A);
  p.out(UART.FCR, FCR.ENABLE_FIFO | FCR7_64BYTE);
  const st2 = p.in(UART.IIR) & IIR_FIFO_ENABLED_16750;
  p.out(UART.FCR, FCR.ENABLE_FIFO);
  p.out(UART.LCR, 0);
  seen['iir_16750_a'] = st1;
  seen['iir_16750_b'] = st2;
  if (st1 === 0xc0 && st2 === IIR_FIFO_ENABLED_16750) return 'TI16750';
  // XScale: a writable IER.UUE.
  const iersave = p.in(UART.IER);
  p.out(UART.IER, iersave & ~IER_UUE);
  if (!(p.in(UART.IER) & IER_UUE)) {
    p.out(UART.IER, iersave | IER_UUE);
    seen['ier_uue'] = p.in(UART.IER) & IER_UUE;
    if (seen['ier_uue']) return 'XScale';
  }
  p.out(UART.IER, iersave);
  if (sizeFifo(p, seen) === 64) type = 'U6_16550A';
  return type;
}

/** autoconfig(): the port type and FIFO size Linux settles on. */
export function autoconfig(p: Port): Probe {
  const seen: Record<string, number> = {};
  const done = (type: string, failed?: string): Probe => {
    const c = CONFIG[type as keyof typeof CONFIG] ?? CONFIG.other;
    return { type, fifosize: c.fifo, txLoadsz: c.txLoad, ...(failed !== undefined && { failed }), seen };
  };
  // The IER test: IER[3:0] must read back 0, then all four.
  const scratch = p.in(UART.IER);
  p.out(UART.IER, 0);
  const scratch2 = p.in(UART.IER) & IER_ALL_INTR;
  p.out(UART.IER, IER_ALL_INTR);
  const scratch3 = p.in(UART.IER) & IER_ALL_INTR;
  p.out(UART.IER, scratch);
  Object.assign(seen, { ier_zero: scratch2, ier_all: scratch3 });
  if (scratch2 !== 0 || scratch3 !== IER_ALL_INTR) return done('unknown', 'IER test failed');
  const saveMcr = p.in(UART.MCR);
  const saveLcr = p.in(UART.LCR);
  // The loopback test: with LOOP|OUT2|RTS, MSR must show DCD and CTS only.
  p.out(UART.MCR, MCR.LOOP | MCR.OUT2 | MCR.RTS);
  seen['msr_loop'] = p.in(UART.MSR) & 0xf0;
  p.out(UART.MCR, saveMcr);
  if (seen['msr_loop'] !== (MSR.DCD | MSR.CTS)) return done('unknown', 'LOOP test failed');
  // Zero the EFR (if any), then ask for FIFOs and read the IIR's top bits.
  p.out(UART.LCR, LCR_CONF_MODE_B);
  p.out(EFR, 0);
  p.out(UART.LCR, 0);
  p.out(UART.FCR, FCR.ENABLE_FIFO);
  seen['iir_fifo'] = p.in(UART.IIR);
  let type: string;
  switch (seen['iir_fifo'] & IIR.FIFO_ENABLED) {
    case 0x00: {
      // autoconfig_8250(): a 16450 has a working scratch register.
      const s = p.in(UART.SCR);
      p.out(UART.SCR, 0xa5);
      const a = p.in(UART.SCR);
      p.out(UART.SCR, 0x5a);
      const b = p.in(UART.SCR);
      p.out(UART.SCR, s);
      type = a === 0xa5 && b === 0x5a ? '16450' : '8250';
      break;
    }
    case 0x80:
      type = '16550';
      break;
    case 0xc0:
      type = autoconfig16550a(p, seen);
      break;
    default:
      type = 'unknown';
  }
  p.out(UART.LCR, saveLcr);
  if (type === 'unknown') return done(type);
  // Reset the UART: MCR back, FIFOs cleared and off, RX read, interrupts off.
  p.out(UART.MCR, saveMcr);
  clearFifos(p);
  p.in(UART.RX);
  p.out(UART.IER, 0);
  return done(type);
}

/** autoconfig_8250()'s scratch-register test on its own (a 16550A passes it too). */
export function scratchTest(p: Port): boolean {
  const s = p.in(UART.SCR);
  p.out(UART.SCR, 0xa5);
  const a = p.in(UART.SCR);
  p.out(UART.SCR, 0x5a);
  const b = p.in(UART.SCR);
  p.out(UART.SCR, s);
  return a === 0xa5 && b === 0x5a && p.in(UART.SCR) === s;
}

/** serial8250_clear_fifos(). */
export function clearFifos(p: Port): void {
  p.out(UART.FCR, FCR.ENABLE_FIFO);
  p.out(UART.FCR, FCR.ENABLE_FIFO | FCR.CLEAR_RCVR | FCR.CLEAR_XMIT);
  p.out(UART.FCR, 0);
}

/** wait_for_lsr(): true if the bits came up within the 10000 polls Linux allows. */
function waitForLsr(p: Port, bits: number): boolean {
  for (let tmout = 10000; tmout > 0; tmout--) if ((p.in(UART.LSR) & bits) === bits) return true;
  return false;
}

/** The driver's state for one port (struct uart_8250_port, the parts used here). */
export class Linux8250 {
  readonly port: Port;
  type = 'unknown';
  fifosize = 0;
  txLoadsz = 0;
  fcr = 0;
  ier = 0;
  lcr = 0;
  mcr = 0;
  readonly bugs = new Set<'THRE' | 'TXEN'>();
  /** What the tty layer received. */
  received = '';
  /** Bytes queued by the tty layer (the xmit kfifo). */
  private xmit: number[] = [];
  initialized = false;
  seen: Record<string, number> = {};

  constructor(dev: IoDevice) {
    this.port = new Port(dev);
  }

  /** serial8250_config_port(): autoconfig(), then the FCR the type uses. */
  configPort(): Probe {
    const probe = autoconfig(this.port);
    this.type = probe.type;
    this.fifosize = probe.fifosize;
    this.txLoadsz = probe.txLoadsz;
    this.fcr = (CONFIG[probe.type as keyof typeof CONFIG] ?? CONFIG.other).fcr;
    this.seen = probe.seen;
    return probe;
  }

  /** serial8250_do_startup() for a port with an IRQ (COM1: IRQ 4), then the line set-up uart_port_startup() does. */
  startup(baud = 115200): void {
    const p = this.port;
    this.mcr = 0;
    clearFifos(p);
    p.in(UART.LSR);
    p.in(UART.RX);
    p.in(UART.IIR);
    p.in(UART.MSR);
    if (p.in(UART.LSR) === 0xff) throw new Error('LSR safety check engaged: no UART');
    // UARTs that do not re-assert THRE once it was acknowledged get a polling timer (UART_BUG_THRE).
    waitForLsr(p, LSR.THRE);
    p.out(UART.IER, IER.THRI);
    const iir1 = p.in(UART.IIR);
    p.out(UART.IER, 0);
    p.out(UART.IER, IER.THRI);
    const iir = p.in(UART.IIR);
    p.out(UART.IER, 0);
    Object.assign(this.seen, { thre_iir1: iir1, thre_iir2: iir });
    if (!(iir1 & IIR.NO_INT) && iir & IIR.NO_INT) this.bugs.add('THRE');
    p.out(UART.LCR, LCR.WLEN8);
    this.setMctrl(MCR.OUT2); // "most PC uarts need OUT2 raised to enable interrupts"
    // Does enabling THRI give an interrupt? If not, UART_BUG_TXEN.
    p.out(UART.IER, IER.THRI);
    const lsr = p.in(UART.LSR);
    const iir2 = p.in(UART.IIR);
    p.out(UART.IER, 0);
    Object.assign(this.seen, { txen_lsr: lsr, txen_iir: iir2 });
    if (lsr & LSR.TEMT && iir2 & IIR.NO_INT) this.bugs.add('TXEN');
    else this.bugs.delete('TXEN');
    p.in(UART.LSR);
    p.in(UART.RX);
    p.in(UART.IIR);
    p.in(UART.MSR);
    this.ier = IER.RLSI | IER.RDI;
    this.initialized = true;
    this.setTermios(baud);
    this.setMctrl(MCR.OUT2 | MCR.DTR | MCR.RTS); // uart_port_dtr_rts() once the line is set
  }

  /** serial8250_do_set_termios() for `baud` 8N1 without CLOCAL (so modem status interrupts are on). */
  setTermios(baud: number): void {
    const p = this.port;
    const quot = Math.round(1843200 / 16 / baud);
    this.lcr = LCR.WLEN8;
    this.ier |= IER.MSI;
    p.out(UART.IER, this.ier);
    p.out(UART.LCR, this.lcr | LCR.DLAB);
    p.out(UART.DLL, quot & 0xff);
    p.out(UART.DLM, quot >> 8);
    p.out(UART.LCR, this.lcr);
    if (this.fcr & FCR.ENABLE_FIFO) p.out(UART.FCR, FCR.ENABLE_FIFO);
    p.out(UART.FCR, this.fcr);
    this.setMctrl(this.mcr);
  }

  private setMctrl(mcr: number): void {
    this.mcr = mcr;
    this.port.out(UART.MCR, mcr);
  }

  /** serial8250_console_write(): IER saved and cleared, the text out ('\n' as "\r\n"), IER restored. */
  consoleWrite(s: string): void {
    const p = this.port;
    const ier = p.in(UART.IER);
    p.out(UART.IER, 0);
    const useFifo = this.fifosize > 1 && this.txLoadsz > 1 && (this.fcr & FCR.ENABLE_FIFO) !== 0 && this.initialized;
    const bytes = [...Buffer.from(s, 'latin1')];
    if (useFifo) {
      // serial8250_console_fifo_write(): wait for THRE, then up to tx_loadsz bytes at a time.
      let i = 0;
      let crSent = false;
      while (i < bytes.length) {
        waitForLsr(p, LSR.THRE);
        for (let n = 0; n < this.txLoadsz && i < bytes.length; n++) {
          if (bytes[i] === 0x0a && !crSent) {
            p.out(UART.TX, 0x0d);
            crSent = true;
          } else {
            p.out(UART.TX, bytes[i++]!);
            crSent = false;
          }
        }
      }
    } else {
      // uart_console_write() with serial8250_console_putchar(): THRE before each byte.
      for (const b of bytes) {
        if (b === 0x0a) {
          waitForLsr(p, LSR.THRE);
          p.out(UART.TX, 0x0d);
        }
        waitForLsr(p, LSR.THRE);
        p.out(UART.TX, b);
      }
    }
    waitForLsr(p, LSR.THRE | LSR.TEMT);
    p.out(UART.IER, ier);
  }

  /** A tty write: queue the bytes and serial8250_start_tx() (IER.THRI on: the interrupt does the rest). */
  ttyWrite(s: string): void {
    this.xmit.push(...Buffer.from(s, 'latin1'));
    if (!(this.ier & IER.THRI)) {
      this.ier |= IER.THRI;
      this.port.out(UART.IER, this.ier);
    }
  }

  /** serial8250_default_handle_irq(): false if the UART had nothing pending (IIR.NO_INT). */
  handleIrq(): boolean {
    const p = this.port;
    const iir = p.in(UART.IIR);
    if (iir & IIR.NO_INT) return false;
    let status = p.in(UART.LSR);
    if (status & (LSR.DR | LSR.BI)) {
      // serial8250_rx_chars()
      let max = 256;
      do {
        this.received += String.fromCharCode(status & LSR.DR ? p.in(UART.RX) : 0);
        if (--max === 0) break;
        status = p.in(UART.LSR);
      } while (status & (LSR.DR | LSR.BI));
    }
    p.in(UART.MSR); // serial8250_modem_status()
    if (status & LSR.THRE && this.ier & IER.THRI) {
      // serial8250_tx_chars(): up to tx_loadsz bytes, then stop_tx when the queue is empty.
      for (let n = this.txLoadsz; n > 0 && this.xmit.length > 0; n--) p.out(UART.TX, this.xmit.shift()!);
      if (this.xmit.length === 0) {
        this.ier &= ~IER.THRI;
        p.out(UART.IER, this.ier);
      }
    }
    return true;
  }
}

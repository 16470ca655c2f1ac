/**
 * The 16550A's registers and their bits, with the names of include/uapi/linux/serial_reg.h (and the
 * datasheet: TI/National PC16550D, "Universal Asynchronous Receiver/Transmitter with FIFOs").
 * Offsets are from the port's base (0x3f8 for COM1).
 */

/** Register offsets. With LCR.DLAB set, offsets 0 and 1 are the divisor latch instead. */
export const UART = Object.freeze({
  /** Read: receive buffer (RBR). */
  RX: 0,
  /** Write: transmit holding register (THR). */
  TX: 0,
  /** Divisor latch, low byte (DLAB = 1). */
  DLL: 0,
  /** Divisor latch, high byte (DLAB = 1). */
  DLM: 1,
  /** Interrupt enable. */
  IER: 1,
  /** Read: interrupt identification. */
  IIR: 2,
  /** Write: FIFO control. */
  FCR: 2,
  /** Line control. */
  LCR: 3,
  /** Modem control. */
  MCR: 4,
  /** Line status. */
  LSR: 5,
  /** Modem status. */
  MSR: 6,
  /** Scratch. */
  SCR: 7,
});

export const IER = Object.freeze({ RDI: 0x01, THRI: 0x02, RLSI: 0x04, MSI: 0x08 });
/** The IIR interrupt ids (bits 3:0) and the FIFO-enabled bits (7:6). */
export const IIR = Object.freeze({
  NO_INT: 0x01,
  MSI: 0x00,
  THRI: 0x02,
  RDI: 0x04,
  RLSI: 0x06,
  RX_TIMEOUT: 0x0c,
  ID: 0x0e,
  FIFO_ENABLED: 0xc0,
});
export const FCR = Object.freeze({ ENABLE_FIFO: 0x01, CLEAR_RCVR: 0x02, CLEAR_XMIT: 0x04, DMA_SELECT: 0x08, TRIGGER_MASK: 0xc0 });
export const LCR = Object.freeze({ WLEN8: 0x03, STOP: 0x04, PARITY: 0x08, SBC: 0x40, DLAB: 0x80 });
export const MCR = Object.freeze({ DTR: 0x01, RTS: 0x02, OUT1: 0x04, OUT2: 0x08, LOOP: 0x10 });
export const LSR = Object.freeze({ DR: 0x01, OE: 0x02, PE: 0x04, FE: 0x08, BI: 0x10, THRE: 0x20, TEMT: 0x40, FIFOE: 0x80 });
export const MSR = Object.freeze({ DCTS: 0x01, DDSR: 0x02, TERI: 0x04, DDCD: 0x08, CTS: 0x10, DSR: 0x20, RI: 0x40, DCD: 0x80 });

/** Receive FIFO trigger levels for FCR bits 7:6. */
export const RX_TRIGGER = Object.freeze([1, 4, 8, 14] as const);
/** The 16550A's FIFO depth. */
export const FIFO_SIZE = 16;

/**
 * A minimal 16550 UART at COM1 for port-I/O exits: THR writes are collected as output, LSR always
 * reports "transmitter empty". Enough for guests that print.
 */
import type { VcpuExit } from '../../kvm/exits.js';
import { COM1 } from './programs.js';

export class SerialPort {
  readonly base: number;
  private out: number[] = [];
  /** Called with each byte the guest writes. */
  onByte?: (b: number) => void;
  private scratch = 0;

  constructor(base = COM1) {
    this.base = base;
  }

  /** Handles an I/O exit if it is ours; returns false otherwise. */
  handle(exit: VcpuExit): boolean {
    if (exit.reason !== 'io' || exit.port < this.base || exit.port > this.base + 7) return false;
    const reg = exit.port - this.base;
    for (let i = 0; i < exit.count; i++) {
      const at = i * exit.size;
      if (exit.direction === 'out') {
        const v = exit.data[at]!;
        if (reg === 0) {
          this.out.push(v);
          this.onByte?.(v);
        } else if (reg === 7) this.scratch = v;
      } else {
        exit.data.fill(0, at, at + exit.size);
        if (reg === 5)
          exit.data[at] = 0x60; // LSR: THR empty, transmitter empty
        else if (reg === 7) exit.data[at] = this.scratch;
      }
    }
    return true;
  }

  /** Everything written so far. */
  get output(): string {
    return Buffer.from(this.out).toString('latin1');
  }

  /** Device state for a VMM handoff. */
  saveState(): { output: number[]; scratch: number } {
    return { output: [...this.out], scratch: this.scratch };
  }
  restoreState(s: { output: number[]; scratch: number }): void {
    this.out = [...s.output];
    this.scratch = s.scratch;
  }
}

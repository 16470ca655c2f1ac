/**
 * The in-kernel interrupt controllers of a mock VM, as state that KVM_GET/SET_IRQCHIP,
 * KVM_GET/SET_PIT2 carry (arch/x86/kvm/i8259.c, ioapic.c, i8254.c), the GSI routing table
 * (virt/kvm/irqchip.c, arch/x86/kvm/irq_comm.c: kvm_set_routing_entry(), the default table of
 * kvm_setup_default_irq_routing()), and kvm_set_irq() through it.
 *
 * Modelled: a line's level reaching the PIC's IRR/last_irr (edge or level by ELCR, as
 * pic_set_irq1()) and the IOAPIC's IRR (ioapic_set_irq(); -1 for a masked pin, an unmasked one
 * delivered like an MSI to its destination), with the summed status KVM_IRQ_LINE_STATUS returns; MSIs (and MSI routes) setting the IRR bit of the destination
 * LAPIC's page when that LAPIC is software-enabled (__apic_accept_irq). For the PIC, what a queued
 * guest does: taking the interrupt it presents (kvm_pic_read_irq(): priority against ISR, IRR → ISR)
 * and its port writes OCW1 (IMR), OCW2 (the EOIs and rotations) and ELCR, where an EOI clears the ISR
 * bit and calls the ack notifiers of the GSI (pic_clear_isr() → kvm_notify_acked_irq(): an irqfd's
 * resampler). A line's level is one value, not the OR over KVM's irq source ids. Not modelled: the
 * ICW initialisation sequence and OCW3 (a VMM sets that state with KVM_SET_IRQCHIP), the IOAPIC's
 * EOI (the LAPIC's), the PIT counting down (its state is kept and returned as set; count_load_time is
 * the mock's clock), timers raising IRQ 0.
 */
import { kvm_ioapic_state, kvm_pic_state, kvm_pit_channel_state, kvm_pit_state2 } from '../../../../uapi/vmm-structs.js';
import { KvmSevError } from '../../../../backend/errors.js';
import { E, fail } from '../common/errno.js';

/** KVM_MAX_IRQ_ROUTES */
export const KVM_MAX_IRQ_ROUTES = 4096;

export interface Route {
  gsi: number;
  type: 1 | 2; // KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI
  irqchip: number;
  pin: number;
  addressLo: number;
  addressHi: number;
  data: number;
}

function picReset(master: boolean): Uint8Array {
  // kvm_create_pic(): elcr_mask 0xf8 / 0xde; the rest starts at 0 (kvm_pic_reset()).
  return kvm_pic_state.encode({ elcr_mask: master ? 0xf8 : 0xde });
}

function ioapicReset(): Uint8Array {
  // kvm_ioapic_reset(): base 0xfec00000, every redirection entry masked.
  return kvm_ioapic_state.encode({ base_address: 0xfec00000n, redirtbl: new Array<bigint>(24).fill(1n << 16n) });
}

/** The default routing of a full in-kernel irqchip: GSI 0-15 to PIC and IOAPIC, 16-23 to the IOAPIC. */
export function defaultRoutes(): Route[] {
  const r: Route[] = [];
  for (let gsi = 0; gsi < 24; gsi++) {
    if (gsi < 16) r.push({ gsi, type: 1, irqchip: gsi < 8 ? 0 : 1, pin: gsi & 7, addressLo: 0, addressHi: 0, data: 0 });
    r.push({ gsi, type: 1, irqchip: 2, pin: gsi, addressLo: 0, addressHi: 0, data: 0 });
  }
  return r;
}

export class MockIrqchip {
  /** PIC master, PIC slave (kvm_pic_state bytes); undefined with a split irqchip. */
  pics: [Uint8Array, Uint8Array] | undefined;
  ioapic: Uint8Array | undefined;
  readonly split: boolean;
  routes: Route[];

  constructor(split: boolean) {
    this.split = split;
    this.pics = split ? undefined : [picReset(true), picReset(false)];
    this.ioapic = split ? undefined : ioapicReset();
    this.routes = split ? [] : defaultRoutes();
  }

  /** pic_set_irq1(): 1, or 0 when a new edge finds the previous one still in IRR (coalesced). */
  private picSetIrq(chip: number, pin: number, level: number): number {
    const p = this.pics![chip]!;
    const mask = 1 << pin;
    const IRR = 1;
    const LAST = 0;
    const ELCR = 14;
    let ret = 1;
    if (p[ELCR]! & mask) {
      if (level) {
        p[IRR]! |= mask;
        p[LAST]! |= mask;
      } else {
        p[IRR]! &= ~mask;
        p[LAST]! &= ~mask;
      }
    } else if (level) {
      if ((p[LAST]! & mask) === 0) {
        if (p[IRR]! & mask) ret = 0;
        p[IRR]! |= mask;
      }
      p[LAST]! |= mask;
    } else {
      p[LAST]! &= ~mask;
    }
    return ret;
  }

  /**
   * ioapic_set_irq() and ioapic_service(): -1 masked, 0 coalesced edge, else how many LAPICs accepted
   * the vector (an edge leaves IRR once serviced).
   */
  private ioapicSetIrq(pin: number, level: number, deliver: (addressLo: number, addressHi: number, data: number) => number): number {
    const s = kvm_ioapic_state.decode(this.ioapic!);
    const entry = s.redirtbl[pin]!;
    const mask = 1 << pin;
    if (!level) {
      s.irr &= ~mask;
      kvm_ioapic_state.encode(s, this.ioapic, 0);
      return 1;
    }
    const edge = ((entry >> 15n) & 1n) === 0n;
    const old = s.irr;
    s.irr = (s.irr | mask) >>> 0;
    kvm_ioapic_state.encode(s, this.ioapic, 0);
    if (edge && old === s.irr) return 0;
    if ((entry >> 16n) & 1n) return -1;
    const dest = Number((entry >> 56n) & 0xffn);
    const n = deliver(0xfee00000 | (dest << 12), 0, Number(entry & 0xffn));
    if (edge) {
      s.irr &= ~mask;
      kvm_ioapic_state.encode(s, this.ioapic, 0);
    }
    return n;
  }

  /** kvm_pic_read_irq() after kvm_cpu_has_extint(): the vector the CPU takes, or -1 if the PIC presents nothing. */
  picReadIrq(acked: (gsi: number) => void): number {
    const [master, slave] = this.pics!.map((b) => kvm_pic_state.decode(b)) as [PicState, PicState];
    const irq = picGetIrq(master, true);
    if (irq < 0) return -1;
    let vector: number;
    const cleared: number[] = [];
    picIntack(master, irq, () => cleared.push(irq));
    if (irq === 2) {
      const irq2 = picGetIrq(slave, false);
      if (irq2 >= 0) picIntack(slave, irq2, () => cleared.push(irq2 + 8));
      vector = slave.irq_base + (irq2 >= 0 ? irq2 : 7); // 7: the spurious interrupt
    } else vector = master.irq_base + irq;
    this.storePics(master, slave);
    for (const pin of cleared) this.ackPic(pin, acked);
    return vector;
  }

  /**
   * A guest OUT to a PIC port the in-kernel PIC owns (pic_ioport_write(), elcr_ioport_write()):
   * true if handled, false for ports it does not own. `acked(gsi)` runs the GSI's ack notifiers.
   */
  picWrite(port: number, value: number, acked: (gsi: number) => void): boolean {
    const master = port === 0x20 || port === 0x21 || port === 0x4d0;
    if (!master && port !== 0xa0 && port !== 0xa1 && port !== 0x4d1) return false;
    const chip = master ? 0 : 1;
    const s = kvm_pic_state.decode(this.pics![chip]);
    const base = chip * 8;
    let eoi = -1;
    if (port >= 0x4d0) s.elcr = value & s.elcr_mask;
    else if ((port & 1) === 1) {
      if (s.init_state !== 0) notModelled('the ICW2-ICW4 initialisation sequence');
      s.imr = value; // OCW1
    } else if (value & 0x18) notModelled(value & 0x10 ? 'ICW1 (the initialisation sequence)' : 'OCW3');
    else {
      // OCW2
      const cmd = value >> 5;
      if (cmd === 0 || cmd === 4) s.rotate_on_auto_eoi = cmd >> 2;
      else if (cmd === 1 || cmd === 5) {
        const priority = picGetPriority(s, s.isr);
        if (priority !== 8) {
          eoi = (priority + s.priority_add) & 7;
          if (cmd === 5) s.priority_add = (eoi + 1) & 7;
        }
      } else if (cmd === 3) eoi = value & 7;
      else if (cmd === 6) s.priority_add = (value + 1) & 7;
      else if (cmd === 7) {
        eoi = value & 7;
        s.priority_add = (eoi + 1) & 7;
      }
    }
    if (eoi >= 0) s.isr &= ~(1 << eoi);
    kvm_pic_state.encode(s, this.pics![chip], 0);
    if (eoi >= 0) this.ackPic(base + eoi, acked);
    return true;
  }

  /** pic_clear_isr()'s notification: kvm_notify_acked_irq(kvm, SELECT_PIC(irq), irq), not for the cascade. */
  private ackPic(irq: number, acked: (gsi: number) => void): void {
    if (irq === 2) return;
    // kvm_irq_map_chip_pin(): the GSI routed to that pin.
    const r = this.routes.find((x) => x.type === 1 && x.irqchip === (irq < 8 ? 0 : 1) && x.pin === (irq & 7));
    if (r) acked(r.gsi);
  }

  private storePics(master: PicState, slave: PicState): void {
    kvm_pic_state.encode(master, this.pics![0], 0);
    kvm_pic_state.encode(slave, this.pics![1], 0);
  }

  /** kvm_set_irq(): the summed status of every route of `gsi` (no route: -1, as with nothing to set). */
  setIrq(gsi: number, level: number, msi: (addressLo: number, addressHi: number, data: number) => number): number {
    let ret = -1;
    for (const r of this.routes) {
      if (r.gsi !== gsi) continue;
      let x: number;
      if (r.type === 2) x = level ? msi(r.addressLo, r.addressHi, r.data) : -1;
      else if (r.irqchip === 2) x = this.ioapicSetIrq(r.pin, level, msi);
      else x = this.picSetIrq(r.irqchip, r.pin, level);
      if (x < 0) continue;
      ret = x + (ret < 0 ? 0 : ret);
    }
    return ret;
  }

  /** KVM_SET_GSI_ROUTING's checks (kvm_set_irq_routing(), kvm_set_routing_entry()). */
  static parseRoutes(split: boolean, entries: readonly { gsi: number; type: number; flags: number; u: number[] }[]): Route[] {
    const out: Route[] = [];
    for (const e of entries) {
      if (e.gsi >= KVM_MAX_IRQ_ROUTES) fail(E.EINVAL, 'gsi out of range');
      if (e.flags) fail(E.EINVAL, 'flags');
      if (e.type === 1) {
        if (split) fail(E.EINVAL, 'irqchip routes need the full in-kernel irqchip');
        const [chip, pin] = [e.u[0]!, e.u[1]!];
        if (chip > 2 || (chip < 2 ? pin >= 8 : pin >= 24)) fail(E.EINVAL, 'pin out of range');
        if (out.some((r) => r.gsi === e.gsi && r.type === 1 && r.irqchip === chip)) fail(E.EINVAL, 'two routes to one chip');
        out.push({ gsi: e.gsi, type: 1, irqchip: chip, pin, addressLo: 0, addressHi: 0, data: 0 });
      } else if (e.type === 2) {
        out.push({ gsi: e.gsi, type: 2, irqchip: 0, pin: 0, addressLo: e.u[0]!, addressHi: e.u[1]!, data: e.u[2]! });
      } else fail(E.EINVAL, `routing type ${e.type}`);
    }
    return out;
  }
}

type PicState = ReturnType<typeof kvm_pic_state.decode>;

function notModelled(what: string): never {
  throw new KvmSevError(
    'ERR_KVM_SEV_MOCK_GUEST_OP',
    `mock guest op: the mock's PIC does not model ${what}; set its state with KVM_SET_IRQCHIP`,
  );
}

/** pic_get_priority(): how far from the highest priority the first set bit of `mask` is (8: none). */
function picGetPriority(s: PicState, mask: number): number {
  if ((mask & 0xff) === 0) return 8;
  let priority = 0;
  while (!(mask & (1 << ((priority + s.priority_add) & 7)))) priority++;
  return priority;
}

/** pic_get_irq(): the IRQ to present, if its priority beats every in-service one (-1: none). */
function picGetIrq(s: PicState, master: boolean): number {
  const priority = picGetPriority(s, s.irr & ~s.imr);
  if (priority === 8) return -1;
  let mask = s.isr;
  if (s.special_fully_nested_mode && master) mask &= ~(1 << 2);
  return priority < picGetPriority(s, mask) ? (priority + s.priority_add) & 7 : -1;
}

/** pic_intack(): IRR → ISR (a level-triggered IRR bit stays while its line is high); auto-EOI clears ISR again. */
function picIntack(s: PicState, irq: number, cleared: () => void): void {
  s.isr |= 1 << irq;
  if (!(s.elcr & (1 << irq))) s.irr &= ~(1 << irq);
  if (s.auto_eoi) {
    if (s.rotate_on_auto_eoi) s.priority_add = (irq + 1) & 7;
    s.isr &= ~(1 << irq);
    cleared();
  }
}

/** The in-kernel PIT's state (KVM_CREATE_PIT2; kvm_pit_reset(): mode 0xff, gate up but on channel 2, count 0x10000). */
export class MockPit {
  state: Uint8Array;
  constructor(now: bigint) {
    const ch = (i: number) =>
      kvm_pit_channel_state.decode(
        kvm_pit_channel_state.encode({ count: 0x10000, mode: 0xff, gate: i === 2 ? 0 : 1, count_load_time: now }),
      );
    this.state = kvm_pit_state2.encode({ channels: [ch(0), ch(1), ch(2)], flags: 0 });
  }
  /** KVM_SET_PIT2: channels and flags as given, each count reloaded now (pit_load_count()). */
  set(b: Uint8Array, now: bigint): void {
    const s = kvm_pit_state2.decode(b);
    for (const c of s.channels) {
      if (c.count === 0) c.count = 0x10000;
      c.count_load_time = now;
    }
    this.state = kvm_pit_state2.encode(s);
  }
}

/**
 * A vCPU's complete architectural state, as the kernel's own struct bytes, so that another VM (in
 * this process or another one) can continue the guest exactly: what a VMM saves for live update or
 * migration (QEMU's kvm_arch_get/put_registers, in the same order).
 *
 * ```ts
 * import { Kvm, saveVcpuState, restoreVcpuState, encodeVcpuState, decodeVcpuState } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using a = kvm.createVm();
 * using b = kvm.createVm();
 * const vcpu = a.createVcpu(0);
 * vcpu.setRegs({ rip: 0x1234n });
 * // A VMM whose guest ran calls vcpu.completePendingIo() first: it finishes an I/O exit the guest waits on.
 * const s = saveVcpuState(vcpu); // regs, sregs, xsave, xcrs, msrs, lapic, events, ...
 * const wire = JSON.stringify(encodeVcpuState(s)); // what goes to another process
 * const copy = b.createVcpu(0);
 * restoreVcpuState(copy, decodeVcpuState(JSON.parse(wire))); // CPUID first, then the rest
 * console.log(copy.getRegs().rip); // 4660n
 * ```
 */
import { KvmSevError } from '../backend/errors.js';
import { ioctlStruct } from '../uapi/ioctl-arg.js';
import * as ioc from '../uapi/ioctls.js';
import type { StructCodec } from '../uapi/codec.js';
import {
  kvm_debugregs,
  kvm_lapic_state,
  kvm_mp_state,
  kvm_regs,
  kvm_sregs,
  kvm_vcpu_events,
  kvm_xcrs,
  kvm_xsave,
  type KvmCpuidEntry2,
  type KvmMsrEntry,
} from '../uapi/kvm-structs.js';
import type { Vcpu } from './vcpu.js';

export interface VcpuState {
  id: number;
  /** Raw struct bytes, exactly as KVM_GET_* returned them. */
  regs: Uint8Array;
  sregs: Uint8Array;
  xsave: Uint8Array;
  xcrs?: Uint8Array;
  /** Only with an in-kernel irqchip. */
  lapic?: Uint8Array;
  events: Uint8Array;
  mpState: Uint8Array;
  debugregs: Uint8Array;
  msrs: KvmMsrEntry[];
  /** The CPUID the VMM gave the vCPU (KVM_SET_CPUID2), restored first. */
  cpuid?: KvmCpuidEntry2[];
}

type AnyCodec = StructCodec<unknown, never, never>;

function getRaw(vcpu: Vcpu, codec: AnyCodec, req: number): Uint8Array {
  const a = codec.arg({} as never);
  vcpu.vm.backend.ioctl(vcpu.fd, req, a);
  return a.bytes;
}

function optional(vcpu: Vcpu, codec: AnyCodec, req: number): Uint8Array | undefined {
  try {
    return getRaw(vcpu, codec, req);
  } catch (e) {
    // ENXIO: no in-kernel LAPIC; EINVAL: no XCRs on this CPU model.
    const c = (e as { code?: string }).code;
    if (c === 'ENXIO' || c === 'EINVAL') return undefined;
    throw e;
  }
}

/** The MSRs KVM lets us read, from its index list (KVM_GET_MSRS stops at the first it cannot). */
function readMsrs(vcpu: Vcpu): KvmMsrEntry[] {
  const out: KvmMsrEntry[] = [];
  let pending = vcpu.vm.kvm.msrIndexList();
  while (pending.length) {
    const got = vcpu.getMsrs(pending);
    out.push(...got);
    pending = pending.slice(got.length + 1); // skip the one that failed
  }
  return out;
}

/** Saves everything a guest needs to continue. Complete pending I/O first (see Vcpu.completePendingIo). */
export function saveVcpuState(vcpu: Vcpu): VcpuState {
  if (vcpu.closed) throw new KvmSevError('ERR_KVM_SEV_CLOSED', `vCPU ${vcpu.id} is closed`);
  // The six that every vCPU has, in one batch (one crossing on the native backend).
  const args = [kvm_regs, kvm_sregs, kvm_xsave, kvm_vcpu_events, kvm_mp_state, kvm_debugregs].map((c) => (c as AnyCodec).arg({} as never));
  const reqs = [
    ioc.KVM_GET_REGS,
    ioc.KVM_GET_SREGS,
    ioc.KVM_GET_XSAVE,
    ioc.KVM_GET_VCPU_EVENTS,
    ioc.KVM_GET_MP_STATE,
    ioc.KVM_GET_DEBUGREGS,
  ];
  vcpu.vm.backend.ioctlBatch(reqs.map((request, i) => ({ fd: vcpu.fd, request, arg: args[i] })));
  const [regs, sregs, xsave, events, mpState, debugregs] = args.map((a) => a.bytes) as [
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
    Uint8Array,
  ];
  const s: VcpuState = { id: vcpu.id, regs, sregs, xsave, events, mpState, debugregs, msrs: readMsrs(vcpu) };
  const xcrs = optional(vcpu, kvm_xcrs, ioc.KVM_GET_XCRS);
  if (xcrs) s.xcrs = xcrs;
  const lapic = optional(vcpu, kvm_lapic_state, ioc.KVM_GET_LAPIC);
  if (lapic) s.lapic = lapic;
  if (vcpu.cpuid) s.cpuid = vcpu.cpuid;
  return s;
}

/** Restores a saved state in QEMU's order: CPUID, regs, xsave, xcrs, sregs, MSRs, MP state, LAPIC, events, debug registers. */
export function restoreVcpuState(vcpu: Vcpu, s: VcpuState): void {
  const b = vcpu.vm.backend;
  const set = (request: number, bytes: Uint8Array) => ({ fd: vcpu.fd, request, arg: ioctlStruct(Uint8Array.from(bytes)) });
  if (s.cpuid) vcpu.setCpuid2(s.cpuid);
  // One batch each side of the MSRs (whose refusals are looked at one by one): one crossing each.
  b.ioctlBatch([
    set(ioc.KVM_SET_REGS, s.regs),
    set(ioc.KVM_SET_XSAVE, s.xsave),
    ...(s.xcrs ? [set(ioc.KVM_SET_XCRS, s.xcrs)] : []),
    set(ioc.KVM_SET_SREGS, s.sregs),
  ]);
  restoreMsrs(vcpu, s.msrs);
  b.ioctlBatch([
    set(ioc.KVM_SET_MP_STATE, s.mpState),
    ...(s.lapic ? [set(ioc.KVM_SET_LAPIC, s.lapic)] : []),
    set(ioc.KVM_SET_VCPU_EVENTS, s.events),
    set(ioc.KVM_SET_DEBUGREGS, s.debugregs),
  ]);
}

/**
 * KVM_SET_MSRS stops at the first MSR it refuses. Some that KVM lists cannot be written back as read
 * (paravirtual MSRs in their reset state): refused ones are fine when the new vCPU already holds the
 * saved value; any other refusal is an error, since the guest would not continue exactly.
 */
function restoreMsrs(vcpu: Vcpu, msrs: readonly KvmMsrEntry[]): void {
  let rest = msrs;
  while (rest.length) {
    const n = vcpu.setMsrs(rest);
    if (n === rest.length) return;
    const refused = rest[n]!;
    const now = vcpu.getMsrs([refused.index])[0];
    if (!now || now.data !== refused.data) {
      throw new KvmSevError(
        'ERR_KVM_SEV_RESTORE',
        `KVM_SET_MSRS refused MSR 0x${refused.index.toString(16)} = 0x${refused.data.toString(16)} (the new vCPU has ${now ? `0x${now.data.toString(16)}` : 'no such MSR'})`,
      );
    }
    rest = rest.slice(n + 1);
  }
}

/** JSON-safe form (hex bytes, bigint as strings) for sending to another process. */
export function encodeVcpuState(s: VcpuState): unknown {
  const hex = (u?: Uint8Array) => (u ? Buffer.from(u).toString('hex') : undefined);
  return {
    id: s.id,
    regs: hex(s.regs),
    sregs: hex(s.sregs),
    xsave: hex(s.xsave),
    xcrs: hex(s.xcrs),
    lapic: hex(s.lapic),
    events: hex(s.events),
    mpState: hex(s.mpState),
    debugregs: hex(s.debugregs),
    msrs: s.msrs.map((m) => [m.index, m.data.toString(16)]),
    cpuid: s.cpuid,
  };
}

export function decodeVcpuState(j: unknown): VcpuState {
  const o = j as Record<string, unknown>;
  const bytes = (k: string): Uint8Array => {
    const v = o[k];
    if (typeof v !== 'string') throw new KvmSevError('ERR_KVM_SEV_BAD_STATE', `vCPU state: '${k}' missing`);
    return Uint8Array.from(Buffer.from(v, 'hex'));
  };
  const opt = (k: string) => (typeof o[k] === 'string' ? bytes(k) : undefined);
  const s: VcpuState = {
    id: Number(o['id']),
    regs: bytes('regs'),
    sregs: bytes('sregs'),
    xsave: bytes('xsave'),
    events: bytes('events'),
    mpState: bytes('mpState'),
    debugregs: bytes('debugregs'),
    msrs: ((o['msrs'] as [number, string][]) ?? []).map(([index, data]) => ({ index, data: BigInt(`0x${data}`) })),
  };
  const xcrs = opt('xcrs');
  if (xcrs) s.xcrs = xcrs;
  const lapic = opt('lapic');
  if (lapic) s.lapic = lapic;
  if (Array.isArray(o['cpuid'])) s.cpuid = o['cpuid'] as KvmCpuidEntry2[];
  return s;
}

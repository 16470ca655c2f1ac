/**
 * The VMM upgrade: hand a running guest to a new VMM process on the same host, without copying or
 * re-encrypting its memory (seed 000: "a low-cost mechanism for userspace VMM upgrades").
 *
 * The old process stops its vCPUs and calls {@link handOff}; the new one calls {@link takeOver}.
 * Over a Unix socket go the guest-memory memfds and the VM fd (SCM_RIGHTS), every vCPU's state, the
 * VMM's own device state, and the encryption context (by one-time token on a kernel with the 2021
 * KVM_SEV_LOCAL_SEND/RECEIVE, else by KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM on the passed VM fd).
 *
 * The messages: `prepare` (old → new, while the guest still runs: the memory layout and memfds; the
 * new VMM builds its VM and memory slots, the part that grows with guest size), `prepared`; then the
 * old VMM pauses the guest and sends `handoff` (the VM fd, vCPU and device state, the encryption
 * context), the new VMM restores the vCPUs and answers `ready`, and the old VMM answers `commit`,
 * closes its VM and never resumes it. Until `commit` the old VMM owns the guest and may resume it;
 * the new one resumes only after `commit`, and then takes the encryption context (the old VM stays
 * alive in the kernel meanwhile, through the VM fd the new process holds). So the guest never runs
 * twice, and the pause (guest stopped in one process, not yet running in the other) holds only
 * constant-size work.
 *
 * examples/local-migration/ is a complete pair: the new VMM listens on a Unix socket
 * (`backend.unixListen(path)`, `unixAccept`) and calls takeOver; the old one connects
 * (`backend.unixConnect(path)`) and calls handOff with its stopped vCPUs; the README shows both.
 */
import type { BackendFd } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import { GuestMemory } from '../kvm/guest-memory.js';
import type { Kvm } from '../kvm/kvm.js';
import { decodeVcpuState, encodeVcpuState, restoreVcpuState, saveVcpuState } from '../kvm/vcpu-state.js';
import type { Vcpu } from '../kvm/vcpu.js';
import type { Vm } from '../kvm/vm.js';
import { MessageReader, sendMessage } from '../backend/framing.js';
import { PageStateTracker, type PageStateSnapshot } from '../sev/page-states/page-state-tracker.js';

export const HANDOFF_VERSION = 1;

/** How the encryption context travels (see {@link SevHandoff}). */
export type EncContextMethod = 'token' | 'move';

/** The SEV side of a handoff, supplied by the lifecycle layer. */
export interface SevHandoff {
  /** Old VMM: make the context transferable; returns what the new VMM needs (e.g. the token). */
  send(): Promise<{ method: EncContextMethod; token?: bigint }>;
  /**
   * New VMM, right after it created its VM (before any vCPU, while the old VMM still runs the guest):
   * e.g. sev_guest_init for LOCAL_RECEIVE, which the kernel refuses once vCPUs exist.
   */
  prepare?(vm: Vm): Promise<void>;
  /** New VMM: take the context into the new VM (LOCAL_RECEIVE with the token, or MOVE from the passed VM fd). */
  receive(vm: Vm, oldVmFd: BackendFd, info: { method: EncContextMethod; token?: bigint }): Promise<void>;
}

export interface HandOffOptions {
  vm: Vm;
  vcpus: readonly Vcpu[];
  /** Guest memory; every piece must be memfd-backed (addMemory({ memfd: true })). */
  memory: readonly GuestMemory[];
  socket: BackendFd;
  /** The VMM's own device state (JSON-serializable), handed over as is. */
  devices?: Record<string, unknown>;
  sev?: SevHandoff;
  /** Milliseconds to wait for each answer of the new VMM (default 30 s). */
  timeoutMs?: number;
  /**
   * Stops the guest's vCPUs (resolves once no KVM_RUN is in flight). Given, the guest keeps running
   * while the new VMM prepares, and pauses only for the constant-size part; without it, the vCPUs
   * must already be stopped.
   */
  pause?: () => void | Promise<void>;
  /**
   * The guest's page states (lib/sev/page-states). Each vCPU's pending exit is completed first (a
   * hypercall the VMM answered settles its pages), then the table travels with the vCPU state.
   */
  pageStates?: PageStateTracker;
}

export interface HandOffResult {
  /** Who owns the guest now. 'source': this process still does, and may resume it. */
  owner: 'source' | 'target';
  reason?: string;
  encContext?: EncContextMethod;
}

/** Old VMM: hands the guest over; closes it here only once the new VMM has it. */
export async function handOff(o: HandOffOptions): Promise<HandOffResult> {
  const backend = o.vm.backend;
  const memfds: BackendFd[] = [];
  const memory = o.memory.map((m, i) => {
    if (!m.memfd)
      throw new KvmSevError(
        'ERR_KVM_SEV_NOT_MEMFD',
        `guest memory ${i} is anonymous: a handoff needs memfd-backed memory (addMemory({ memfd: true }))`,
      );
    memfds.push(m.memfd);
    return { gpa: m.guestPhysAddr.toString(16), size: m.size, fd: i };
  });
  const reader = new MessageReader(backend, o.socket);
  const timeout = o.timeoutMs ?? 30_000;
  try {
    // While the guest runs: the new VMM maps the memory and builds its memory slots.
    await sendMessage(backend, o.socket, { kind: 'prepare', version: HANDOFF_VERSION, vmType: o.vm.type, memory }, memfds);
    const prepared = await withTimeout(reader.next(), timeout);
    if (prepared.body['kind'] !== 'prepared' || prepared.body['ok'] !== true) {
      return {
        owner: 'source',
        reason: `the new VMM could not prepare: ${String((prepared.body['error'] as string | undefined) ?? 'no reason')}`,
      };
    }
  } catch (e) {
    return { owner: 'source', reason: (e as Error).message };
  }
  // The pause starts here.
  await o.pause?.();
  // KVM_RUN completes a pending exit (I/O, MMIO, MSR, hypercall) before state is saved: a vCPU saved
  // in the middle of KVM_EXIT_HYPERCALL would re-execute the hypercall once restored
  // (Documentation/virt/kvm/api.rst, KVM_EXIT_HYPERCALL).
  for (const v of o.vcpus) {
    v.completePendingIo();
    o.pageStates?.settle(v.id);
  }
  const pageStates = o.pageStates?.snapshot();
  const vcpus = o.vcpus.map((v) => encodeVcpuState(saveVcpuState(v)));
  const sev = o.sev ? await o.sev.send() : undefined;
  try {
    await sendMessage(
      backend,
      o.socket,
      {
        kind: 'handoff',
        vcpus,
        devices: o.devices ?? {},
        ...(pageStates ? { pageStates } : {}),
        ...(sev ? { sev: { method: sev.method, ...(sev.token !== undefined ? { token: sev.token.toString(16) } : {}) } } : {}),
      },
      [o.vm.fd],
    );
    const ready = await withTimeout(reader.next(), timeout);
    if (ready.body['kind'] !== 'ready' || ready.body['ok'] !== true) {
      return { owner: 'source', reason: `the new VMM refused: ${String((ready.body['error'] as string | undefined) ?? 'no reason')}` };
    }
    await sendMessage(backend, o.socket, { kind: 'commit' });
  } catch (e) {
    return { owner: 'source', reason: (e as Error).message };
  }
  // Committed: never resume here. The new VMM holds the memfds and the old VM fd (so the kernel
  // keeps the VM, and its encryption context, until the new VMM has taken it).
  o.vm.close();
  return { owner: 'target', ...(sev ? { encContext: sev.method } : {}) };
}

export interface TakeOverOptions {
  kvm: Kvm;
  socket: BackendFd;
  sev?: SevHandoff;
  timeoutMs?: number;
  /** Called once the VM is rebuilt, before `ready`: a last check by the VMM (throwing refuses the guest). */
  beforeReady?: (devices: Record<string, unknown>) => void | Promise<void>;
}

export interface TakenOver {
  vm: Vm;
  vcpus: Vcpu[];
  memory: GuestMemory[];
  devices: Record<string, unknown>;
  owner: 'target';
  encContext?: EncContextMethod;
  /** The guest's page states, if the old VMM tracked them. */
  pageStates?: PageStateTracker;
}

/** New VMM: receives the guest, rebuilds the VM over the same memory, and acknowledges. */
export async function takeOver(o: TakeOverOptions): Promise<TakenOver> {
  const backend = o.kvm.backend;
  const reader = new MessageReader(backend, o.socket);
  const timeout = o.timeoutMs ?? 30_000;
  const prep = await withTimeout(reader.next(), timeout);
  const received = [...prep.fds];
  let vm: Vm | undefined;
  const memory: GuestMemory[] = [];
  let stage = 'prepare';
  try {
    const p = prep.body;
    if (p['kind'] !== 'prepare' || p['version'] !== HANDOFF_VERSION)
      throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `not a version-${HANDOFF_VERSION} handoff`);
    // The size-dependent part, while the old VMM still runs the guest.
    vm = o.kvm.createVm(Number(p['vmType']));
    await o.sev?.prepare?.(vm);
    for (const [slot, m] of (p['memory'] as { gpa: string; size: number; fd: number }[]).entries()) {
      const fd = prep.fds[m.fd];
      if (!fd || fd.kind !== 'memfd') throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `memory ${slot}: fd ${m.fd} is not a memfd`);
      const mem = new GuestMemory(backend.mmapShared(fd, m.size), BigInt(`0x${m.gpa}`), fd);
      vm.setUserMemoryRegion({ slot, guestPhysAddr: mem.guestPhysAddr, memory: mem });
      memory.push(mem);
    }
    await sendMessage(backend, o.socket, { kind: 'prepared', ok: true });

    stage = 'handoff';
    const msg = await withTimeout(reader.next(), timeout);
    received.push(...msg.fds);
    const b = msg.body;
    const [oldVmFd] = msg.fds;
    if (b['kind'] !== 'handoff') throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `expected handoff, got ${String(b['kind'])}`);
    if (!oldVmFd || oldVmFd.kind !== 'vm') throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', 'the handoff carries no VM fd');
    const sevInfo = b['sev'] as { method: EncContextMethod; token?: string } | undefined;
    if (sevInfo && !o.sev)
      throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', 'the guest is an SEV guest but takeOver() was given no SEV handler');
    const vcpus = (b['vcpus'] as unknown[]).map((j) => {
      const s = decodeVcpuState(j);
      const v = vm!.createVcpu(s.id);
      restoreVcpuState(v, s);
      return v;
    });
    const devices = (b['devices'] as Record<string, unknown>) ?? {};
    const pageStates = b['pageStates'] ? PageStateTracker.fromSnapshot(b['pageStates'] as PageStateSnapshot) : undefined;
    await o.beforeReady?.(devices);
    await sendMessage(backend, o.socket, { kind: 'ready', ok: true });
    stage = 'commit';
    const commit = await withTimeout(reader.next(), timeout);
    if (commit.body['kind'] !== 'commit')
      throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', `expected commit, got ${String(commit.body['kind'])}`);
    // From here on this process owns the guest.
    if (sevInfo)
      await o.sev!.receive(vm, oldVmFd, { method: sevInfo.method, ...(sevInfo.token ? { token: BigInt(`0x${sevInfo.token}`) } : {}) });
    oldVmFd.close(); // the old VM dies now (the old VMM closed its fds at commit)
    return {
      vm,
      vcpus,
      memory,
      devices,
      owner: 'target',
      ...(pageStates ? { pageStates } : {}),
      ...(sevInfo ? { encContext: sevInfo.method } : {}),
    };
  } catch (e) {
    if (stage !== 'commit') {
      try {
        await sendMessage(backend, o.socket, { kind: stage === 'prepare' ? 'prepared' : 'ready', ok: false, error: (e as Error).message });
      } catch {
        /* the old VMM is gone */
      }
    }
    vm?.close();
    for (const m of memory) {
      try {
        m.close(); // unmaps and closes its memfd
      } catch {
        /* already gone */
      }
    }
    for (const f of received) f.close();
    throw e;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new KvmSevError('ERR_KVM_SEV_TIMEOUT', `no answer from the other VMM within ${ms} ms`)), ms);
    }),
  ]);
}

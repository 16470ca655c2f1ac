/**
 * The source side of host-to-host live migration of a running SEV guest: {@link migrate}.
 *
 * 1. Checks that cost nothing: SEV-ES (upstream KVM has no KVM_SEV_SEND_UPDATE_VMSA, so the VMSA
 *    cannot leave: arch/x86/kvm/svm/sev.c has sev_send_update_data() only), NOSEND, and the guest's
 *    migration-control MSR (MSR_KVM_MIGRATION_CONTROL, Documentation/virt/kvm/x86/msr.rst) unless
 *    overridden. Nothing is sent.
 * 2. HELLO → the target's PLATFORM: its chain is verified and the policy's DOMAIN and SEV bits checked
 *    (target-check.ts). Then KVM_SEV_SEND_START (sev_send_start()) wraps fresh transport keys for the
 *    target's PDH; START carries the session and our PDH to the target's RECEIVE_START.
 * 3. Pre-copy: every page once, then rounds of what KVM's dirty log (KVM_GET_DIRTY_LOG) and the page-state
 *    tracker (a page whose state changed is dirty) report. A private page goes through
 *    KVM_SEV_SEND_UPDATE_DATA, one 4 KiB page per call (sev_send_update_data() refuses a packet that
 *    crosses a page); a shared page goes as its plaintext. Like QEMU's migration/ram.c, the dirty log
 *    is read before the pages are, so a write during a round is caught by the next one; the page state
 *    is read after the dirty log (the order that avoids sending a just-converted page as shared).
 * 4. Stop-and-copy once the estimated downtime (what is left, at the measured PSP command rate and
 *    socket rate) fits the limit (default 300 ms, QEMU's DEFAULT_MIGRATE_SET_DOWNTIME); auto-converge
 *    throttles the vCPUs when rounds do not shrink (QEMU's cpu-throttle: 20 %, +10 %, up to 99 %).
 * 5. Final pass with the vCPUs stopped, then STATE (vCPUs, devices, page-state table, migration-control
 *    MSR, kvmclock) and END; the target checks everything, issues RECEIVE_FINISH and answers ACK. Only
 *    then KVM_SEV_SEND_FINISH (the guest becomes SENT and must never run here again) and COMMIT.
 *
 * Every failure before SEND_FINISH ends with KVM_SEV_SEND_CANCEL (SUPDATE → RUNNING) and the guest
 * running here again; AMD's 2021 QEMU series issued SEND_FINISH on failure too, leaving a source that
 * could not run. The one window in which a crash loses the guest is from SEND_FINISH here until COMMIT
 * reaches the target: a few microseconds of local work and one record (docs/migration-stream.md).
 */
import type { Duplex } from 'node:stream';
import type * as tls from 'node:tls';
import { KvmSevError } from '../../backend/errors.js';
import type { GuestMemory } from '../../kvm/guest-memory.js';
import { encodeVcpuState, saveVcpuState } from '../../kvm/vcpu-state.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { Vm } from '../../kvm/vm.js';
import type { SevGuestCommands } from '../../sev/kvm-sev-commands.js';
import type { PageStateChange, PageStateView } from '../../sev/page-states/page-state-view.js';
import type { SevPlatform } from '../../sev/platform.js';
import { KVM_MEM, KVM_X86_SEV_ES_VM, SEV_POLICY } from '../../uapi/constants.js';
import { checkInt, checkObject } from '../../uapi/args.js';
import { invalidArgType } from '../../uapi/errors.js';
import type { AmdCertificate } from '../../crypto/amd-cert.js';
import { connectTo, type ConnectTo } from './endpoint.js';
import { PAGE_SIZE, RECORD, RecordChannel, reasonOf, STREAM_MAGIC, STREAM_VERSION, privatePagePayload } from './stream.js';
import { checkPolicyAllowsSending, checkTarget, refused } from './target-check.js';

/** A running SEV guest as its VMM holds it. */
export interface LiveGuest {
  vm: Vm;
  vcpus: readonly Vcpu[];
  /** Guest RAM by memory slot; every page of these is migrated. */
  memory: readonly { slot: number; memory: GuestMemory }[];
  /** The guest's SEV commands (with this host's /dev/sev). */
  sev: SevGuestCommands;
  /** This host's /dev/sev: its PDH goes to the target, its OCA decides the DOMAIN check. */
  platform: SevPlatform;
  /** The page-state tracker's read side (private, shared, converting; the migration-control MSR). */
  pageStates: PageStateView;
  /** Stops the vCPUs; resolves once no KVM_RUN is in flight. */
  pause(): Promise<void>;
  /** Lets the vCPUs run again (after a failed migration). */
  resume(): void;
  /** Auto-converge: the share of time (0 … 0.99) the vCPUs are kept from running. */
  throttle?(fraction: number): void;
  /** The VMM's device state at the stop (JSON-serializable). */
  devices?(): Record<string, unknown>;
  /**
   * Completes every vCPU's pending exit once they are stopped, settling the pages of an answered
   * KVM_HC_MAP_GPA_RANGE (the tracker's `PageStateExits.completePending(vcpus)`). Default: each vCPU's
   * `completePendingIo()`.
   */
  completePending?(): void;
  /**
   * The tracker's whole state at the stop (`PageStateTracker.snapshot()`: boot generations, per-vCPU
   * state, the log's options), carried in the STATE record beside the runs so that the target's
   * tracker goes on exactly where this one stopped.
   */
  pageStateSnapshot?(): unknown;
  /** Told after each SEND_* command succeeds, so the VMM's VM state machine follows (`tracker.vmEvent`). */
  onSevEvent?(event: 'SEND_START' | 'SEND_FINISH' | 'SEND_CANCEL'): void;
}

export type MigrationPhase = 'checks' | 'handshake' | 'pre-copy' | 'stop-and-copy' | 'commit' | 'done';

export interface MigrationProgress {
  phase: MigrationPhase;
  round: number;
  /** Pages sent so far, by kind. */
  privatePages: number;
  sharedPages: number;
  /** Pages still dirty at the end of the last round. */
  dirtyPages: number;
  /** Pages dirtied per second during the last round. */
  dirtyRate: number;
  /** The measured SEND_UPDATE_DATA rate, pages per second. */
  pspRate: number;
  /** What the stop would take now, in ms. */
  estimatedDowntimeMs: number;
  /** Auto-converge's current throttle (0 … 0.99). */
  throttle: number;
  bytesSent: number;
  elapsedMs: number;
}

export interface MigrateOptions {
  to: ConnectTo;
  /** Connect with TLS (`node:tls` options: ca, servername, client cert…). */
  tls?: tls.ConnectionOptions;
  /** The longest the guest may be stopped, in ms (default 300). */
  downtimeLimitMs?: number;
  /** Give up (SEND_CANCEL, guest keeps running here) after this long, in ms (default 600 000). */
  timeLimitMs?: number;
  /** Throttle the vCPUs when rounds do not converge (default true, when the guest has `throttle`). */
  autoConverge?: boolean;
  /** Migrate even if the guest has not set the migration-control MSR (e.g. firmware that cannot). */
  ignoreMigrationControl?: boolean;
  /** AMD roots to trust besides AMD's own (the mock's in tests: `mockAmdRoots()` from kvm-sev/mock). */
  trustedRoots?: ReadonlyArray<{ ark: AmdCertificate | Uint8Array }>;
  /** Ms to wait for each answer of the target (default 30 000). */
  answerTimeoutMs?: number;
  onProgress?: (p: MigrationProgress) => void;
}

export interface MigrationResult {
  /**
   * Who owns the guest now. 'source': it runs here (again); `reason` says why. 'target': the guest is
   * SENT here (the firmware will not run it again); the VMM stops its vCPU loop and closes the VM.
   */
  owner: 'source' | 'target';
  reason?: string;
  /** The phase it ended in (for a failure: where). */
  phase: MigrationPhase;
  /** SEND_CANCEL was issued (a failure after SEND_START). */
  cancelled: boolean;
  /** Nothing of the guest left this host (a refusal before SEND_START). */
  nothingSent: boolean;
  rounds: number;
  totalMs: number;
  /** From the vCPUs' stop to the target's ACK (the guest runs nowhere meanwhile). */
  downtimeMs: number;
  privatePages: number;
  sharedPages: number;
  bytesSent: number;
  pspRate: number;
  /**
   * Shared pages per second through the stream: pages over the time spent writing them, which waits
   * whenever the socket is full, so it is the rate the connection and the target take them at.
   */
  sharedRate: number;
  throttle: number;
}

/** Thrown inside; becomes a result with `owner: 'source'`. */
class GiveUp extends Error {}

const DEFAULT_DOWNTIME_MS = 300;
const DEFAULT_TIME_LIMIT_MS = 600_000;
/** Fixed part of the stop: vCPU state (every MSR), STATE/END, the target's restore and RECEIVE_FINISH, the ACK. */
const STOP_OVERHEAD_MS = 40;
/**
 * The pre-copy rates are measured while the guest and the target compete for the same CPUs and PSP;
 * the estimate keeps this margin so that the stop fits the limit it was chosen for.
 */
const ESTIMATE_MARGIN = 1.25;

/** Moves a running SEV guest to another host; see the module comment. Never throws for a refusal or failure: the result says who owns the guest. */
export async function migrate(guest: LiveGuest, options: MigrateOptions): Promise<MigrationResult> {
  // Bad arguments are the caller's mistake, not a refusal: typed errors, before anything happens.
  const g = checkObject('guest', guest as unknown);
  checkObject('options', options);
  checkObject('options.to', options.to);
  if (!Array.isArray(g['vcpus'])) throw invalidArgType('guest.vcpus', 'an array of Vcpu', g['vcpus']);
  if (!Array.isArray(g['memory'])) throw invalidArgType('guest.memory', 'an array of { slot, memory }', g['memory']);
  for (const f of ['pause', 'resume']) if (typeof g[f] !== 'function') throw invalidArgType(`guest.${f}`, 'a function', g[f]);
  if (options.onProgress !== undefined && typeof options.onProgress !== 'function')
    throw invalidArgType('options.onProgress', 'a function', options.onProgress);
  const MAX_MS = 2 ** 31 - 1; // setTimeout's limit
  const t0 = performance.now();
  const downtimeLimit = checkInt('options.downtimeLimitMs', options.downtimeLimitMs ?? DEFAULT_DOWNTIME_MS, 1, MAX_MS);
  const timeLimit = checkInt('options.timeLimitMs', options.timeLimitMs ?? DEFAULT_TIME_LIMIT_MS, 1, MAX_MS);
  const answerTimeout = checkInt('options.answerTimeoutMs', options.answerTimeoutMs ?? 30_000, 1, MAX_MS);
  const st = {
    phase: 'checks' as MigrationPhase,
    round: 0,
    privatePages: 0,
    sharedPages: 0,
    dirtyPages: 0,
    dirtyRate: 0,
    pspRate: 0,
    sharedRate: 0,
    estimatedDowntimeMs: 0,
    throttle: 0,
    bytesSent: 0,
    elapsedMs: 0,
  };
  let channel: RecordChannel | undefined;
  let started = false; // SEND_START done and not finished: a failure must SEND_CANCEL
  let anySent = false;
  let finished = false; // SEND_FINISH done: the guest must never run here again, whatever happens next
  let paused = false;
  let loggingOn = false;
  let stoppedAt = 0;
  let cancelled = false;
  const changed = new Set<bigint>(); // pages whose state changed since their last send
  let unsubscribe: (() => void) | undefined;
  const progress = () => {
    st.elapsedMs = performance.now() - t0;
    st.bytesSent = channel?.bytesOut ?? 0;
    try {
      options.onProgress?.({ ...st });
    } catch {
      /* a failing progress listener does not fail the migration */
    }
  };
  const result = (owner: 'source' | 'target', reason?: string): MigrationResult => ({
    owner,
    ...(reason !== undefined ? { reason } : {}),
    phase: st.phase,
    cancelled,
    nothingSent: !anySent,
    rounds: st.round,
    totalMs: performance.now() - t0,
    downtimeMs: stoppedAt ? performance.now() - stoppedAt : 0,
    privatePages: st.privatePages,
    sharedPages: st.sharedPages,
    bytesSent: channel?.bytesOut ?? 0,
    pspRate: st.pspRate,
    sharedRate: st.sharedRate,
    throttle: st.throttle,
  });

  const setLogging = (on: boolean) => {
    for (const { slot, memory } of guest.memory) {
      guest.vm.setUserMemoryRegion({ slot, flags: on ? KVM_MEM.LOG_DIRTY_PAGES : 0, guestPhysAddr: memory.guestPhysAddr, memory });
    }
    loggingOn = on;
  };

  try {
    // 1. Local checks: nothing leaves.
    const status = await guest.sev.guestStatus();
    const policy = status.policy;
    if (guest.vm.type === KVM_X86_SEV_ES_VM || (policy & SEV_POLICY.ES) !== 0) {
      throw refused(
        'the guest is an SEV-ES guest: upstream KVM has no KVM_SEV_SEND_UPDATE_VMSA (arch/x86/kvm/svm/sev.c), so its encrypted VMSA cannot be sent',
      );
    }
    checkPolicyAllowsSending(policy);
    if (!guest.pageStates.migrationReady && !options.ignoreMigrationControl) {
      throw refused(
        'the guest has not set MSR_KVM_MIGRATION_CONTROL (0x4b564d08) bit 0: it has not said that it reports its shared pages. ' +
          'Pass ignoreMigrationControl: true (CLI --ignore-migration-control) to migrate it anyway',
      );
    }
    const own = await guest.platform.pdhCertExport();

    // 2. Handshake.
    st.phase = 'handshake';
    const socket: Duplex = await connectTo(options.to, options.tls, answerTimeout);
    channel = new RecordChannel(socket);
    const layout = guest.memory.map(({ slot, memory }) => ({ slot, gpa: memory.guestPhysAddr.toString(16), size: memory.size }));
    const pingAt = performance.now();
    await channel.sendJson(RECORD.HELLO, {
      magic: STREAM_MAGIC,
      version: STREAM_VERSION,
      vmType: guest.vm.type,
      policy,
      memory: layout,
      vcpus: guest.vcpus.map((v) => v.id),
    });
    progress();
    const plat = await channel.expect(RECORD.PLATFORM, answerTimeout);
    const rtt = performance.now() - pingAt;
    const target = decodePlatform(plat);
    checkTarget({
      policy,
      target,
      sourcePlatCerts: own.certChain,
      ...(options.trustedRoots ? { trustedRoots: options.trustedRoots } : {}),
    });
    const sent = await guest.sev.sendStart({ pdhCert: target.pdh, platCerts: target.platCerts, amdCerts: target.amdCerts });
    started = true;
    guest.onSevEvent?.('SEND_START');
    anySent = true;
    await channel.sendJson(RECORD.START, {
      policy: sent.policy,
      pdh: Buffer.from(own.pdh).toString('base64'),
      session: Buffer.from(sent.session).toString('base64'),
    });
    await channel.expectJson(RECORD.STARTED, answerTimeout);
    const ch = channel;

    // 3. Pre-copy.
    st.phase = 'pre-copy';
    progress();
    unsubscribe = guest.pageStates.onChange((c: PageStateChange) => {
      for (let i = 0; i < c.pages; i++) changed.add(c.gpa + BigInt(i * PAGE_SIZE));
    });
    setLogging(true);
    for (const { slot } of guest.memory) guest.vm.getDirtyLog(slot); // start from a clean log
    let pspMs = 0;
    let pspCalls = 0;
    let sharedMs = 0;
    let sharedCalls = 0;
    const pspRate = () => (pspCalls > 0 ? (pspCalls / pspMs) * 1000 : 0);
    const sharedRate = () => (sharedCalls > 0 ? (sharedCalls / Math.max(sharedMs, 0.001)) * 1000 : Infinity);
    const checkTime = () => {
      const peer = ch.peerAbort();
      if (peer !== undefined) throw new GiveUp(`the target gave up: ${peer}`);
      if (ch.failed) throw ch.failed;
      if (st.phase === 'pre-copy' && performance.now() - t0 > timeLimit) {
        throw new GiveUp(
          `did not converge within the time limit (${timeLimit} ms): ${st.dirtyPages} pages still dirty, ` +
            `dirty rate ${st.dirtyRate.toFixed(0)} pages/s against a PSP rate of ${st.pspRate.toFixed(0)} pages/s; ` +
            `estimated downtime ${st.estimatedDowntimeMs.toFixed(0)} ms over the ${downtimeLimit} ms limit`,
        );
      }
    };
    const memOf = (gpa: bigint) => guest.memory.find((m) => m.memory.contains(gpa, PAGE_SIZE))!.memory;
    const sendPages = async (pages: Iterable<bigint>) => {
      let n = 0;
      for (const gpa of pages) {
        if ((++n & 255) === 0) {
          checkTime();
          progress();
        }
        changed.delete(gpa);
        const state = guest.pageStates.pageState(gpa);
        const mem = memOf(gpa);
        if (state === 'private' || state === 'converting') {
          const a = performance.now();
          const p = await guest.sev.sendUpdateData(mem.range(gpa, PAGE_SIZE));
          pspMs += performance.now() - a;
          pspCalls++;
          await ch.sendQueued(RECORD.PRIVATE_PAGE, privatePagePayload(gpa, p.header, p.trans));
          st.privatePages++;
        } else {
          const a = performance.now();
          await ch.sendQueuedSharedPage(gpa, mem.view(gpa, PAGE_SIZE));
          sharedMs += performance.now() - a;
          sharedCalls++;
          st.sharedPages++;
        }
      }
      const a = performance.now();
      await ch.flush();
      sharedMs += performance.now() - a;
      st.pspRate = pspRate();
      if (sharedCalls > 0) st.sharedRate = sharedRate();
    };
    /** Dirty log first, then the pages whose state changed: in address order, each once. */
    const collectDirty = (): bigint[] => {
      const set = new Set<bigint>();
      for (const { slot, memory } of guest.memory) {
        const bitmap = guest.vm.getDirtyLog(slot);
        for (let i = 0; i < bitmap.length; i++) {
          const byte = bitmap[i]!;
          if (byte === 0) continue;
          for (let b = 0; b < 8; b++) if (byte & (1 << b)) set.add(memory.guestPhysAddr + BigInt((i * 8 + b) * PAGE_SIZE));
        }
      }
      for (const gpa of changed) set.add(gpa);
      return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    };
    let pipeRate = Infinity; // private pages per second end to end: our PSP, the socket, the target's PSP
    const estimate = (pages: readonly bigint[]) => {
      let priv = 0;
      for (const g of pages) {
        const s = guest.pageStates.pageState(g);
        if (s === 'private' || s === 'converting') priv++;
      }
      const pr = Math.min(pspRate(), pipeRate) || 1;
      return ESTIMATE_MARGIN * ((priv / pr) * 1000 + ((pages.length - priv) / sharedRate()) * 1000) + STOP_OVERHEAD_MS + 2 * rtt;
    };

    // Round 0: every page.
    let roundStart = performance.now();
    let roundPrivate0 = 0;
    const all: bigint[] = [];
    for (const { memory } of guest.memory) for (let o = 0; o < memory.size; o += PAGE_SIZE) all.push(memory.guestPhysAddr + BigInt(o));
    await sendPages(all);
    let sentLastRound = all.length;
    let strikes = 0;
    const converge = options.autoConverge !== false && guest.throttle !== undefined;
    let dirty: bigint[];
    for (;;) {
      // Flow control: the round counts as done when the target has every page of it in place, so a
      // backlog in the socket or at the target's PSP is paid here, not during the stop.
      await ch.sendJson(RECORD.ROUND, { round: st.round, privatePages: st.privatePages, sharedPages: st.sharedPages });
      for (;;) {
        const done = await ch.expectJson(RECORD.ROUND_DONE, Math.max(answerTimeout, timeLimit));
        if (done['round'] === st.round) break;
      }
      const roundMs = performance.now() - roundStart;
      if (st.privatePages > roundPrivate0) pipeRate = ((st.privatePages - roundPrivate0) / roundMs) * 1000;
      dirty = collectDirty();
      st.dirtyPages = dirty.length;
      st.dirtyRate = roundMs > 0 ? (dirty.length / roundMs) * 1000 : 0;
      st.estimatedDowntimeMs = estimate(dirty);
      progress();
      if (st.estimatedDowntimeMs <= downtimeLimit) break;
      checkTime();
      // Auto-converge (QEMU migration/ram.c mig_throttle_guest_down(): dirtied more than half of what
      // a round sent, twice in a row ⇒ throttle 20 %, then 10 % more each time, at most 99 %).
      if (converge) {
        if (dirty.length > sentLastRound / 2) strikes++;
        else strikes = 0;
        if (strikes >= 2) {
          st.throttle = st.throttle === 0 ? 0.2 : Math.min(0.99, st.throttle + 0.1);
          guest.throttle!(st.throttle);
          strikes = 0;
        }
      }
      st.round++;
      roundStart = performance.now();
      roundPrivate0 = st.privatePages;
      await sendPages(dirty);
      sentLastRound = dirty.length;
    }

    // 4. Stop-and-copy.
    st.phase = 'stop-and-copy';
    progress();
    stoppedAt = performance.now();
    await guest.pause();
    paused = true;
    if (guest.completePending) guest.completePending();
    else for (const v of guest.vcpus) v.completePendingIo();
    st.round++;
    // What the last round's collection found (the log is cleared by reading it) plus what came since.
    dirty = [...new Set([...dirty, ...collectDirty()])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    await sendPages(dirty);
    unsubscribe();
    unsubscribe = undefined;
    const runs = [...guest.pageStates.runs()].map((r) => ({ gpa: r.gpa.toString(16), pages: r.pages, state: r.state }));
    let clock: string | undefined;
    try {
      clock = guest.vm.getClock().clock.toString();
    } catch {
      clock = undefined; // a backend without kvmclock: the guest's TSC travels in its MSRs
    }
    await ch.sendJson(RECORD.STATE, {
      vcpus: guest.vcpus.map((v) => encodeVcpuState(saveVcpuState(v))),
      devices: guest.devices?.() ?? {},
      pageStates: runs,
      migrationControl: guest.pageStates.migrationReady ? 1 : 0,
      generation: guest.pageStates.generation,
      pageStateSnapshot: guest.pageStateSnapshot?.() ?? null,
      clock: clock ?? null,
    });
    await ch.sendJson(RECORD.END, { privatePages: st.privatePages, sharedPages: st.sharedPages, rounds: st.round });
    progress();
    const ack = await ch.expectJson(RECORD.ACK, answerTimeout);
    if (ack['ok'] !== true) throw new GiveUp(`the target refused the guest: ${reasonOf(ack, 'error')}`);

    // 5. The target has everything and has issued RECEIVE_FINISH. From SEND_FINISH on, never resume here.
    st.phase = 'commit';
    progress();
    await guest.sev.sendFinish();
    started = false; // no SEND_CANCEL any more: the guest is SENT
    guest.onSevEvent?.('SEND_FINISH');
    finished = true;
    try {
      await ch.send(RECORD.COMMIT, new Uint8Array(0));
    } catch (e) {
      // The window (module comment): the guest is SENT here and the target may never resume it.
      st.phase = 'done';
      return result(
        'target',
        `SEND_FINISH done but COMMIT could not be sent (${(e as Error).message}): the target does not resume without it`,
      );
    }
    st.phase = 'done';
    const r = result('target');
    progress();
    await new Promise<void>((res) => socket.end(res));
    return r;
  } catch (e) {
    const peer = channel?.peerAbort();
    const reason = peer !== undefined ? `the target gave up: ${peer}` : (e as Error).message;
    unsubscribe?.();
    if (started) {
      try {
        await guest.sev.sendCancel();
        cancelled = true;
        guest.onSevEvent?.('SEND_CANCEL');
      } catch {
        /* the firmware refused (not SUPDATE): the guest status says what it is */
      }
    }
    if (loggingOn) {
      try {
        setLogging(false);
      } catch {
        /* the VM is gone */
      }
    }
    if (!finished && (paused || st.phase === 'stop-and-copy')) guest.resume();
    if (channel && !channel.failed) {
      try {
        await channel.sendJson(RECORD.ABORT, { reason });
      } catch {
        /* gone */
      }
      await channel.closeGracefully();
    }
    channel?.close();
    return result(finished ? 'target' : 'source', reason);
  }
}

function decodePlatform(p: Buffer): { pdh: Uint8Array; platCerts: Uint8Array; amdCerts: Uint8Array } {
  const parts: Uint8Array[] = [];
  let off = 0;
  for (let i = 0; i < 3; i++) {
    if (off + 4 > p.length) throw new KvmSevError('ERR_KVM_SEV_MIGRATION_PROTOCOL', 'migration stream: a short PLATFORM record');
    const n = p.readUInt32BE(off);
    if (off + 4 + n > p.length) throw new KvmSevError('ERR_KVM_SEV_MIGRATION_PROTOCOL', 'migration stream: a short PLATFORM record');
    parts.push(p.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return { pdh: parts[0]!, platCerts: parts[1]!, amdCerts: parts[2]! };
}

export function encodePlatform(pdh: Uint8Array, platCerts: Uint8Array, amdCerts: Uint8Array): Buffer {
  const out: Buffer[] = [];
  for (const b of [pdh, platCerts, amdCerts]) {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(b.length);
    out.push(n, Buffer.from(b));
  }
  return Buffer.concat(out);
}

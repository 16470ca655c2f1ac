/**
 * The target side of host-to-host live migration: {@link receive}. It answers HELLO with this
 * platform's certificates (PDH_CERT_EXPORT, and ASK ‖ ARK), builds the VM and its memory from the
 * source's layout, creates the incoming context with KVM_SEV_RECEIVE_START (arch/x86/kvm/svm/sev.c:
 * sev_receive_start(); after KVM_SEV_INIT2 / KVM_SEV_INIT, never LAUNCH_START), puts every private
 * page in place with KVM_SEV_RECEIVE_UPDATE_DATA (whose MAC check refuses an altered packet) and every
 * shared page as it came. At END it checks the totals, restores the vCPUs and the kvmclock, issues
 * KVM_SEV_RECEIVE_FINISH, and answers ACK; it resumes (returns the guest) only on COMMIT, i.e. once the
 * source has issued SEND_FINISH and can no longer run it. Anything else (ABORT, a closed connection, a
 * bad packet) destroys the half-built VM: the source still has the guest.
 */
import type { AddressInfo } from 'node:net';
import type * as tls from 'node:tls';
import { KvmSevError } from '../../backend/errors.js';
import { serializeAmdCert } from '../../crypto/amd-cert.js';
import { allBuiltinRoots } from '../../crypto/builtin-amd-roots.js';
import { verifyCekChain } from '../../crypto/chain.js';
import { parseSevCert, SEV_CERT_SIZE } from '../../crypto/sev-cert.js';
import type { GuestMemory } from '../../kvm/guest-memory.js';
import type { Kvm } from '../../kvm/kvm.js';
import { decodeVcpuState, restoreVcpuState } from '../../kvm/vcpu-state.js';
import type { Vcpu } from '../../kvm/vcpu.js';
import type { Vm } from '../../kvm/vm.js';
import { SevGuestCommands } from '../../sev/kvm-sev-commands.js';
import type { PageState, PageStateRun } from '../../sev/page-states/page-state-view.js';
import type { SevPlatform } from '../../sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, SEV_POLICY } from '../../uapi/constants.js';
import { checkInt, checkObject } from '../../uapi/args.js';
import { invalidArgType } from '../../uapi/errors.js';
import { acceptOne, type ListenOn } from './endpoint.js';
import { encodePlatform } from './source.js';
import {
  PAGE_SIZE,
  RECORD,
  RecordChannel,
  STREAM_MAGIC,
  STREAM_VERSION,
  decodePrivatePage,
  decodeSharedPage,
  parseJson,
  protocolError,
  recordName,
} from './stream.js';

export interface ReceiveProgress {
  phase: 'listening' | 'handshake' | 'receiving' | 'restoring' | 'waiting-commit' | 'done';
  round: number;
  privatePages: number;
  sharedPages: number;
  bytesReceived: number;
}

export interface ReceiveOptions {
  from: ListenOn;
  /** Serve TLS (`node:tls` server options: key, cert, requestCert…). */
  tls?: tls.TlsOptions;
  kvm: Kvm;
  /** This host's /dev/sev (RECEIVE_START's sev_fd; its PDH and chain go to the source). */
  platform: SevPlatform;
  /**
   * ASK ‖ ARK for this platform's CEK (AMD's KDS serves them per generation). Default: the built-in
   * AMD root pair whose ASK signed this platform's CEK.
   */
  amdCerts?: Uint8Array;
  /** Called with the bound address (the port, when 0 was asked for). */
  onListening?: (address: AddressInfo | string) => void;
  onProgress?: (p: ReceiveProgress) => void;
  /** The VMM's set-up of the new VM before its vCPUs are restored (irqchip, CPUID, hypercall exits…). */
  setup?: (vm: Vm) => void | Promise<void>;
  /** A last check of the VMM before ACK (devices, page states); throwing refuses the guest. */
  beforeAck?: (r: ReceivedGuest) => void | Promise<void>;
  /** Ms to wait for each record of the source (default 30 000). */
  recordTimeoutMs?: number;
}

export interface ReceivedGuest {
  vm: Vm;
  vcpus: Vcpu[];
  memory: { slot: number; memory: GuestMemory }[];
  sev: SevGuestCommands;
  devices: Record<string, unknown>;
  /** The page-state table as the source had it at the stop (install it in this host's tracker). */
  pageStates: PageStateRun[];
  /** MSR_KVM_MIGRATION_CONTROL as the guest left it. */
  migrationControl: number;
  generation: number;
  /** The source tracker's snapshot (`PageStateTracker.snapshot()`), if its VMM sent one; else null. */
  pageStateSnapshot: unknown;
  policy: number;
  rounds: number;
  privatePages: number;
  sharedPages: number;
  /** Closes the VM, its vCPUs and memory (the caller's, once it is done with the guest). */
  close(): void;
}

const STATES: ReadonlySet<string> = new Set<PageState>(['normal', 'private', 'shared', 'converting']);

/** Receives one guest; resolves once the source committed (the guest is this host's, stopped, ready to run). */
export async function receive(o: ReceiveOptions): Promise<ReceivedGuest> {
  // Bad arguments are the caller's mistake: typed errors before anything listens.
  const opts = checkObject('options', o as unknown);
  checkObject('options.from', opts['from']);
  const need = (name: string, method: string) => {
    const v = checkObject(`options.${name}`, opts[name]);
    if (typeof v[method] !== 'function') throw invalidArgType(`options.${name}`, `a ${name === 'kvm' ? 'Kvm' : 'SevPlatform'}`, v);
  };
  need('kvm', 'createVm');
  need('platform', 'pdhCertExport');
  for (const f of ['onListening', 'onProgress', 'setup', 'beforeAck'])
    if (opts[f] !== undefined && typeof opts[f] !== 'function') throw invalidArgType(`options.${f}`, 'a function', opts[f]);
  if (o.amdCerts !== undefined && !(o.amdCerts instanceof Uint8Array)) throw invalidArgType('options.amdCerts', 'a Uint8Array', o.amdCerts);
  const timeout = checkInt('options.recordTimeoutMs', o.recordTimeoutMs ?? 30_000, 1, 2 ** 31 - 1);
  const st: ReceiveProgress = { phase: 'listening', round: 0, privatePages: 0, sharedPages: 0, bytesReceived: 0 };
  const progress = (ch?: RecordChannel) => {
    st.bytesReceived = ch?.bytesIn ?? 0;
    o.onProgress?.({ ...st });
  };
  // The platform's answer is ready before anyone connects.
  const own = await o.platform.pdhCertExport();
  const amdCerts = o.amdCerts ?? builtinAmdCertsFor(own.certChain);
  const listener = acceptOne(o.from, o.tls, o.onListening);
  let channel: RecordChannel;
  try {
    channel = new RecordChannel(await listener.connection);
  } finally {
    listener.close();
  }
  let vm: Vm | undefined;
  const vcpus: Vcpu[] = [];
  const memory: { slot: number; memory: GuestMemory }[] = [];
  const closeAll = () => {
    for (const v of vcpus) v.close();
    vm?.close();
    for (const m of memory) {
      try {
        m.memory.close();
      } catch {
        /* already gone */
      }
    }
  };
  try {
    st.phase = 'handshake';
    const hello = await channel.expectJson(RECORD.HELLO, timeout);
    if (hello['magic'] !== STREAM_MAGIC) throw protocolError('not a kvm-sev live-migration stream');
    if (hello['version'] !== STREAM_VERSION)
      throw protocolError(`stream version ${String(hello['version'])}; this host speaks version ${STREAM_VERSION}`);
    const vmType = Number(hello['vmType']);
    const policy = Number(hello['policy']);
    if (vmType === KVM_X86_SEV_ES_VM || (policy & SEV_POLICY.ES) !== 0)
      throw new KvmSevError('ERR_KVM_SEV_MIGRATION_REFUSED', 'an SEV-ES guest: upstream KVM has no KVM_SEV_RECEIVE_UPDATE_VMSA');
    const layout = hello['memory'] as { slot: number; gpa: string; size: number }[];
    if (!Array.isArray(layout) || layout.length === 0) throw protocolError('HELLO has no memory layout');
    await channel.send(RECORD.PLATFORM, encodePlatform(own.pdh, own.certChain, amdCerts));

    const start = await channel.expectJson(RECORD.START, timeout);
    vm = o.kvm.createVm(vmType);
    for (const m of layout) {
      const mem = vm.addMemory({ guestPhysAddr: BigInt(`0x${m.gpa}`), size: m.size, slot: m.slot });
      memory.push({ slot: m.slot, memory: mem });
    }
    const sev = new SevGuestCommands(vm, o.platform);
    if (vmType === KVM_X86_DEFAULT_VM) await sev.init();
    else await sev.init2();
    await sev.receiveStart({
      policy: Number(start['policy']),
      pdh: Buffer.from(String(start['pdh']), 'base64'),
      session: Buffer.from(String(start['session']), 'base64'),
    });
    await channel.sendJson(RECORD.STARTED, { ok: true });

    st.phase = 'receiving';
    progress(channel);
    const memOf = (gpa: bigint): GuestMemory => {
      const m = memory.find((x) => x.memory.contains(gpa, PAGE_SIZE));
      if (!m || (gpa & 0xfffn) !== 0n)
        throw protocolError(`a page at 0x${gpa.toString(16)}, outside the guest's memory or not page-aligned`);
      return m.memory;
    };
    let state: Record<string, unknown> | undefined;
    for (;;) {
      const r = await channel.next(timeout);
      if (r.type === RECORD.PRIVATE_PAGE) {
        const p = decodePrivatePage(r.payload);
        const mem = memOf(p.gpa);
        try {
          await sev.receiveUpdateData({ header: p.header, trans: p.trans, guest: mem.range(p.gpa, PAGE_SIZE) });
        } catch (e) {
          throw Object.assign(
            new KvmSevError(
              'ERR_KVM_SEV_MIGRATION_INTEGRITY',
              `RECEIVE_UPDATE_DATA refused the page at 0x${p.gpa.toString(16)}: ${(e as Error).message} (an altered or misdirected packet: the guest is refused)`,
            ),
            { cause: e },
          );
        }
        if ((++st.privatePages & 1023) === 0) progress(channel);
      } else if (r.type === RECORD.SHARED_PAGE) {
        const p = decodeSharedPage(r.payload);
        memOf(p.gpa).write(p.gpa, p.data);
        if ((++st.sharedPages & 1023) === 0) progress(channel);
      } else if (r.type === RECORD.ROUND) {
        st.round = Number(parseJson(r.payload)['round']);
        await channel.sendJson(RECORD.ROUND_DONE, { round: st.round });
        progress(channel);
      } else if (r.type === RECORD.STATE) {
        state = parseJson(r.payload);
      } else if (r.type === RECORD.END) {
        const end = parseJson(r.payload);
        if (!state) throw protocolError('END before STATE');
        if (end['privatePages'] !== st.privatePages || end['sharedPages'] !== st.sharedPages) {
          throw protocolError(
            `the source sent ${String(end['privatePages'])} private and ${String(end['sharedPages'])} shared pages, ` +
              `${st.privatePages} and ${st.sharedPages} arrived`,
          );
        }
        st.round = Number(end['rounds']);
        break;
      } else if (r.type === RECORD.ABORT) {
        throw new KvmSevError('ERR_KVM_SEV_MIGRATION_REFUSED', `the source gave up: ${String(parseJson(r.payload)['reason'])}`);
      } else {
        throw protocolError(`unexpected ${recordName(r.type)} record during pre-copy`);
      }
    }

    st.phase = 'restoring';
    progress(channel);
    const pageStates = decodeRuns(state['pageStates']);
    await o.setup?.(vm);
    for (const j of state['vcpus'] as unknown[]) {
      const s = decodeVcpuState(j);
      const v = vm.createVcpu(s.id);
      vcpus.push(v);
      restoreVcpuState(v, s);
    }
    if (typeof state['clock'] === 'string') {
      try {
        vm.setClock({ clock: BigInt(state['clock']) });
      } catch {
        /* no kvmclock on this backend */
      }
    }
    await sev.receiveFinish();
    const received: ReceivedGuest = {
      vm,
      vcpus,
      memory,
      sev,
      devices: (state['devices'] as Record<string, unknown>) ?? {},
      pageStates,
      migrationControl: Number(state['migrationControl'] ?? 0),
      generation: Number(state['generation'] ?? 0),
      pageStateSnapshot: state['pageStateSnapshot'] ?? null,
      policy,
      rounds: st.round,
      privatePages: st.privatePages,
      sharedPages: st.sharedPages,
      close: closeAll,
    };
    await o.beforeAck?.(received);
    await channel.sendJson(RECORD.ACK, { ok: true });
    st.phase = 'waiting-commit';
    progress(channel);
    // Without COMMIT the source may have cancelled and resumed: never run the guest then.
    await channel.expect(RECORD.COMMIT, timeout);
    st.phase = 'done';
    progress(channel);
    channel.close();
    return received;
  } catch (e) {
    if (!channel.failed) {
      try {
        const why = (e as Error).message;
        if (st.phase === 'restoring') await channel.sendJson(RECORD.ACK, { ok: false, error: why });
        else await channel.sendJson(RECORD.ABORT, { reason: why });
      } catch {
        /* gone */
      }
    }
    closeAll(); // the half-built guest goes first: nothing of it waits for the peer
    await channel.closeGracefully();
    throw e;
  }
}

function decodeRuns(j: unknown): PageStateRun[] {
  if (!Array.isArray(j)) throw protocolError('STATE has no page-state table');
  return j.map((r: { gpa?: unknown; pages?: unknown; state?: unknown }) => {
    if (typeof r.gpa !== 'string' || typeof r.pages !== 'number' || typeof r.state !== 'string' || !STATES.has(r.state))
      throw protocolError('a malformed page-state run');
    return { gpa: BigInt(`0x${r.gpa}`), pages: r.pages, state: r.state as PageState };
  });
}

/** ASK ‖ ARK of the built-in AMD root whose ASK signed this platform's CEK. */
function builtinAmdCertsFor(certChain: Uint8Array): Uint8Array {
  const at = (i: number) => parseSevCert(certChain.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
  for (const root of allBuiltinRoots()) {
    try {
      verifyCekChain({ ark: root.ark, ask: root.ask, cek: at(2), pek: at(0), pdh: at(0) });
    } catch {
      continue;
    }
    return Buffer.concat([serializeAmdCert(root.ask), serializeAmdCert(root.ark)]);
  }
  throw new KvmSevError(
    'ERR_KVM_SEV_NO_AMD_ROOT',
    "no built-in AMD root signed this platform's CEK: pass receive({ amdCerts }) (ASK ‖ ARK from AMD's KDS; in tests the mock's root)",
  );
}

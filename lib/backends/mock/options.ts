/**
 * Options of a {@link MockHost}, checked once at construction (Node-style typed errors).
 */
import { invalidArgType, invalidArgValue, outOfRange } from '../../uapi/errors.js';
import type { MemoryController, ProcessorProfile, SevFirmware } from './psp/api.js';
import { resolveProcessor, type ProcessorName } from './processor-option.js';
import type { FaultOptions, ThrottleOptions } from './kernel/ccp/sev-dev.js';
import type { KernelProfile } from './kernel/common/kernel-profile.js';
import type { TraceEntry } from './trace.js';

export type { KernelProfile };

export interface MockHostOptions {
  /** The kernel the host runs. Default '7.2'. 'local-migration-2021' is the kernel of seed 000. */
  kernel?: KernelProfile;
  /** The processor / firmware generation (or a custom profile). Default 'milan'. */
  processor?: ProcessorName | ProcessorProfile;
  /** kvm_amd's sev / sev_es parameters (default on; off or unsupported means off), and SNP VM types (default off). */
  sev?: { enabled?: boolean; es?: boolean; snp?: boolean };
  /** RLIMIT_MEMLOCK (bytes) and CAP_IPC_LOCK. Default: 8 MiB with CAP_IPC_LOCK (a root VMM). */
  memlock?: { limit: bigint; capIpcLock?: boolean };
  /** 'upfront' (REG_REGION pins; mainline) or 'demand' (seed 001). Default 'upfront'. */
  pinning?: 'upfront' | 'demand';
  faults?: FaultOptions;
  /** Make PSP commands take realistic time (async calls settle late; sync calls block). */
  throttle?: ThrottleOptions;
  /** Record every ioctl in `host.trace`, and/or hand each entry to a function. */
  trace?: boolean | ((e: TraceEntry) => void);
  /** The firmware (default: a new MockFirmware for the processor over `memory`). */
  firmware?: SevFirmware;
  /** The memory controller the default firmware uses (default: ciphertext in memory; the hybrid passes a plaintext one). */
  memory?: MemoryController;
  /** totalram in bytes, for 7.2's pin check. Default 256 GiB. */
  totalRam?: bigint;
}

export interface ResolvedOptions {
  kernel: KernelProfile;
  processor: ProcessorProfile;
  sev: { enabled: boolean; es: boolean; snp: boolean };
  memlock: { limit: bigint; capIpcLock: boolean };
  pinning: 'upfront' | 'demand';
  faults: FaultOptions;
  throttle: ThrottleOptions | undefined;
  trace: boolean | ((e: TraceEntry) => void);
  totalRam: bigint;
}

function obj<T>(name: string, v: unknown): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null) throw invalidArgType(name, 'object', v);
  return v as T;
}

function bool(name: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw invalidArgType(name, 'boolean', v);
  return v;
}

function posInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number') throw invalidArgType(name, 'number', v);
  if (!Number.isSafeInteger(v) || v < min) throw outOfRange(name, `an integer >= ${min}`, v);
  return v;
}

export function resolveOptions(options: MockHostOptions): ResolvedOptions {
  const o = obj<MockHostOptions>('options', options) ?? {};
  const kernel = o.kernel ?? '7.2';
  if (kernel !== '6.12' && kernel !== '7.2' && kernel !== 'local-migration-2021') {
    throw invalidArgValue('options.kernel', kernel, "must be '6.12', '7.2' or 'local-migration-2021'");
  }
  const processor = resolveProcessor(o.processor);
  const s = obj<NonNullable<MockHostOptions['sev']>>('options.sev', o.sev) ?? {};
  const sev = {
    enabled: bool('options.sev.enabled', s.enabled, true),
    es: bool('options.sev.es', s.es, true),
    snp: bool('options.sev.snp', s.snp, false),
  };
  if (kernel === 'local-migration-2021' && sev.snp) throw invalidArgValue('options.sev.snp', true, 'the 2021 kernel has no SNP');
  const m = obj<NonNullable<MockHostOptions['memlock']>>('options.memlock', o.memlock);
  let memlock = { limit: 8n << 20n, capIpcLock: true };
  if (m) {
    if (typeof m.limit !== 'bigint') throw invalidArgType('options.memlock.limit', 'bigint', m.limit);
    if (m.limit < 0n) throw outOfRange('options.memlock.limit', '>= 0n', m.limit);
    memlock = { limit: m.limit, capIpcLock: bool('options.memlock.capIpcLock', m.capIpcLock, false) };
  }
  const pinning = o.pinning ?? 'upfront';
  if (pinning !== 'upfront' && pinning !== 'demand') throw invalidArgValue('options.pinning', pinning, "must be 'upfront' or 'demand'");
  const f = obj<FaultOptions>('options.faults', o.faults) ?? {};
  const faults: FaultOptions = {};
  if (f.failCommand !== undefined) {
    const fc = obj<{ nth: number; status: number }>('options.faults.failCommand', f.failCommand)!;
    faults.failCommand = {
      nth: posInt('options.faults.failCommand.nth', fc.nth, 1),
      status: posInt('options.faults.failCommand.status', fc.status, 0),
    };
  }
  if (f.pspTimeoutAfter !== undefined) faults.pspTimeoutAfter = posInt('options.faults.pspTimeoutAfter', f.pspTimeoutAfter, 0);
  const t = obj<ThrottleOptions>('options.throttle', o.throttle);
  let throttle: ThrottleOptions | undefined;
  if (t) {
    if (t.bytesPerSecond === undefined && t.commandsPerSecond === undefined)
      throw invalidArgValue('options.throttle', t, 'must give bytesPerSecond, commandsPerSecond or both');
    throttle = {
      ...(t.bytesPerSecond !== undefined ? { bytesPerSecond: posInt('options.throttle.bytesPerSecond', t.bytesPerSecond, 1) } : {}),
      ...(t.commandsPerSecond !== undefined
        ? { commandsPerSecond: posInt('options.throttle.commandsPerSecond', t.commandsPerSecond, 1) }
        : {}),
    };
  }
  const trace = o.trace ?? false;
  if (typeof trace !== 'boolean' && typeof trace !== 'function') throw invalidArgType('options.trace', 'boolean or function', trace);
  const totalRam = o.totalRam ?? 256n << 30n;
  if (typeof totalRam !== 'bigint' || totalRam <= 0n) throw invalidArgType('options.totalRam', 'a positive bigint', totalRam);
  return { kernel, processor, sev, memlock, pinning, faults, throttle, trace, totalRam };
}

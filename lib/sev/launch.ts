/**
 * The SEV guest lifecycle as a type-state launcher: each launch step returns the object for the next
 * state, and a step that is illegal in the current state is not a method of its type, so an
 * out-of-order launch does not type-check (as in virtee/sev's `Launcher<State>`).
 *
 * ```ts
 * import { Kvm, SevLaunch, SevPlatform } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * import { KVM_X86_SEV_VM } from 'kvm-sev/uapi';
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using vm = kvm.createVm(KVM_X86_SEV_VM);
 * using platform = SevPlatform.open(kvm.backend);
 * const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
 * const guest = await SevLaunch.init(vm, { platform });                      // INIT2
 * const launching = await guest.launchStart({ policy: 0 });                  // → LUPDATE
 * await launching.launchUpdateData(mem.range(0n, 0x10000));
 * const measured = await launching.launchMeasure();                          // → LSECRET
 * // @ts-expect-error: launchUpdateData is not a method of MeasuredGuest (the build fails without this line's error)
 * void measured.launchUpdateData;
 * const running = await measured.launchFinish();                             // → RUNNING
 * console.log((await running.status()).stateName);                          // RUNNING
 * ```
 *
 * At run time every step also checks the firmware's guest state first and explains an illegal order
 * in words, and a state object that the launch has moved past refuses further use.
 */
import { KvmSevError } from '../backend/errors.js';
import type { GuestMemory } from '../kvm/guest-memory.js';
import type { Vm } from '../kvm/vm.js';
import { GSTATE, guestStateName, KVM_X86_DEFAULT_VM, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, PAGE_SIZE, SEV_POLICY } from '../uapi/constants.js';
import { invalidArgType, invalidArgValue } from '../uapi/errors.js';
import type { MappingRange } from '../uapi/ioctl-arg.js';
import { isMappingRange } from '../uapi/ioctl-arg.js';
import {
  SevGuestCommands,
  type LaunchMeasurement,
  type LaunchStartOptions,
  type SevGuestStatus,
  type SevPacketOptions,
} from './kvm-sev-commands.js';
import type { SevPlatform } from './platform.js';

export interface SevInitOptions {
  /** The /dev/sev platform (its fd is LAUNCH_START's sev_fd). */
  platform?: SevPlatform;
  /** An SEV-ES guest (its policy must have the ES bit). */
  es?: boolean;
  /** 'init2' on a KVM_X86_SEV(_ES)_VM, 'legacy' (INIT / ES_INIT) on a default VM; 'auto' picks by the VM's type. */
  init?: 'auto' | 'init2' | 'legacy';
  /** INIT2 only: SVM_SEV_FEAT_* bits (SEV-ES) and the GHCB version (0 = the default). */
  vmsaFeatures?: bigint;
  ghcbVersion?: number;
}

export interface ProgressOptions {
  /** Called after each chunk with bytes done and total. */
  onProgress?: (done: number, total: number) => void;
  /** Bytes per LAUNCH_UPDATE_DATA (a multiple of 4096; default 16 MiB). */
  chunkSize?: number;
}

type Range = MappingRange | GuestMemory;

const STAGE_NAMES = ['initialised', 'launching (LUPDATE)', 'measured (LSECRET)', 'running'] as const;

/** What every state can do: status, debug access, regions, teardown. */
abstract class SevGuestState {
  /** @internal */
  protected readonly core: LaunchCore;
  /** @internal */
  protected readonly stage: number;
  /** @internal */
  constructor(core: LaunchCore, stage: number) {
    this.core = core;
    this.stage = stage;
  }
  get vm(): Vm {
    return this.core.vm;
  }
  get commands(): SevGuestCommands {
    return this.core.cmds;
  }
  get es(): boolean {
    return this.core.es;
  }
  /** @internal refuse a state object the launch has moved past */
  protected live(step: string): void {
    if (this.core.closed) throw new KvmSevError('ERR_KVM_SEV_CLOSED', `${step}: the guest was closed`);
    if (this.core.stage !== this.stage) {
      throw new KvmSevError(
        'ERR_KVM_SEV_STALE_STATE',
        `${step}: this object describes the guest while it was ${STAGE_NAMES[this.stage]}, but the launch has moved on to ${STAGE_NAMES[this.core.stage]}; use the object the last step returned`,
      );
    }
  }
  /** @internal check the firmware's GSTATE before a step */
  protected async expect(step: string, allowed: readonly number[], why: string): Promise<void> {
    this.live(step);
    const st = await this.core.cmds.guestStatus();
    if (!allowed.includes(st.state)) {
      throw new KvmSevError(
        'ERR_KVM_SEV_WRONG_STATE',
        `${step} needs the guest ${why}, but the firmware says it is ${st.stateName} (${st.state})` + explainState(st.state),
      );
    }
  }
  /** KVM_SEV_GUEST_STATUS */
  status(): Promise<SevGuestStatus> {
    return this.core.cmds.guestStatus();
  }
  /** DBG_DECRYPT `length` bytes of guest memory at `range` (the policy must allow debugging). */
  async dbgDecrypt(range: Range, length?: number): Promise<Uint8Array> {
    this.live('dbgDecrypt');
    const r = toRange(range, length);
    const out = new Uint8Array(r.length);
    await this.core.cmds.dbgDecrypt(r, out);
    return out;
  }
  /** DBG_ENCRYPT `data` into guest memory at `range`. */
  async dbgEncrypt(data: Uint8Array, range: Range): Promise<void> {
    this.live('dbgEncrypt');
    await this.core.cmds.dbgEncrypt(data, toRange(range, data.byteLength));
  }
  /**
   * KVM_MEMORY_ENCRYPT_REG_REGION: pins guest memory. Checks RLIMIT_MEMLOCK first and says what is
   * needed, instead of the kernel's bare ENOMEM.
   */
  registerRegion(range: Range): void {
    this.live('registerRegion');
    const r = toRange(range);
    this.core.checkMemlock(r.length);
    this.core.cmds.registerRegion(r);
    this.core.regions.push(r);
    this.core.pinned += pages(r);
  }
  unregisterRegion(range: Range): void {
    this.live('unregisterRegion');
    const r = toRange(range);
    this.core.cmds.unregisterRegion(r);
    const i = this.core.regions.findIndex((x) => x.mapping === r.mapping && x.offset === r.offset && x.length === r.length);
    if (i >= 0) {
      this.core.regions.splice(i, 1);
      this.core.pinned -= pages(r);
    }
  }
  /**
   * Tears the guest down in the kernel's order: unregister regions, close the vCPUs and the VM
   * (KVM then DEACTIVATEs and DECOMMISSIONs the guest and reclaims its ASID), unmap its memory.
   */
  close(): void {
    if (this.core.closed) return;
    this.core.closed = true;
    for (const r of this.core.regions.splice(0)) {
      try {
        this.core.cmds.unregisterRegion(r);
      } catch {
        /* the VM is going away anyway: destroy unpins every region */
      }
    }
    this.core.vm.close();
  }
  [Symbol.dispose](): void {
    this.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
  }
}

function explainState(s: number): string {
  switch (s) {
    case GSTATE.UNINIT:
      return ': no launch has started (call launchStart first)';
    case GSTATE.LUPDATE:
      return ': the launch is taking data (launchUpdateData), not measured yet';
    case GSTATE.LSECRET:
      return ': the launch was measured; only launchSecret and launchFinish remain';
    case GSTATE.RUNNING:
      return ': the launch is finished';
    case GSTATE.SUPDATE:
      return ': the guest is being sent (migration)';
    case GSTATE.RUPDATE:
      return ': the guest is being received (migration)';
    case GSTATE.SENT:
      return ': the guest was sent away';
    default:
      return '';
  }
}

const pages = (r: MappingRange): number => Math.ceil(((r.offset % PAGE_SIZE) + r.length) / PAGE_SIZE);

function toRange(r: Range, length?: number): MappingRange {
  if (isMappingRange(r)) return length === undefined ? r : { ...r, length };
  if (r && typeof r === 'object' && 'range' in r && typeof r.range === 'function') {
    const m = r;
    return m.range(m.guestPhysAddr, length ?? m.size);
  }
  throw invalidArgType('range', 'a guest-memory range or a GuestMemory', r);
}

/** @internal shared by the state objects of one guest */
class LaunchCore {
  stage = 0;
  closed = false;
  regions: MappingRange[] = [];
  pinned = 0;
  measurement: LaunchMeasurement | undefined;
  constructor(
    readonly vm: Vm,
    readonly cmds: SevGuestCommands,
    readonly es: boolean,
  ) {}

  checkMemlock(bytes: number): void {
    const sys = this.vm.backend.system;
    if (sys.capIpcLock()) return;
    const limit = sys.memlockLimit();
    if (limit === 'unlimited') return;
    const need = BigInt((this.pinned + Math.ceil(bytes / PAGE_SIZE)) * PAGE_SIZE);
    if (need > limit) {
      throw new KvmSevError(
        'ERR_KVM_SEV_MEMLOCK',
        `registering ${bytes} bytes would pin ${need} bytes in all, over RLIMIT_MEMLOCK (${limit} bytes): KVM would answer ENOMEM. ` +
          `Raise the limit (\`ulimit -l ${need / 1024n}\` in KiB, LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf) or grant CAP_IPC_LOCK.`,
      );
    }
  }
}

/** Initialised (INIT/ES_INIT/INIT2 done): the launch can start. */
export class InitializedGuest<ES extends boolean = boolean> extends SevGuestState {
  /** Type-level only: whether this is an SEV-ES launch (makes launchUpdateVmsa type-check only for ES). */
  declare protected readonly esBrand: ES;
  /** @internal */
  constructor(core: LaunchCore) {
    super(core, 0);
  }
  /**
   * LAUNCH_START with the policy and the guest owner's session (both optional parts: no `dh` and no
   * `session` means no secure channel, and zero TEK/TIK). Moves the guest to LUPDATE.
   */
  async launchStart(options: LaunchStartOptions): Promise<LaunchingGuest<ES>> {
    if (typeof options !== 'object' || options === null) throw invalidArgType('options', 'object', options);
    if (typeof options.policy !== 'number') throw invalidArgType('options.policy', 'number', options.policy);
    const esPolicy = (options.policy & SEV_POLICY.ES) !== 0;
    if (esPolicy !== this.core.es) {
      throw invalidArgValue(
        'options.policy',
        options.policy,
        this.core.es ? 'must have the ES bit (0x4) for an SEV-ES guest' : 'has the ES bit (0x4) but the guest was initialised as plain SEV',
      );
    }
    // No GUEST_STATUS here: before LAUNCH_START the kernel has no /dev/sev fd recorded for the VM.
    this.live('launchStart');
    await this.core.cmds.launchStart(options);
    this.core.stage = 1;
    return new LaunchingGuest<ES>(this.core);
  }
}

/** Launching (LUPDATE): memory and, for SEV-ES, vCPU state go in; then the measurement. */
export class LaunchingGuest<ES extends boolean = boolean> extends SevGuestState {
  /** Type-level only: whether this is an SEV-ES launch (makes launchUpdateVmsa type-check only for ES). */
  declare protected readonly esBrand: ES;
  /** @internal */
  constructor(core: LaunchCore) {
    super(core, 1);
  }
  /**
   * LAUNCH_UPDATE_DATA over a range of guest memory: measures it and encrypts it in place. Large
   * ranges go in chunks (16 MiB by default), reporting progress after each.
   */
  async launchUpdateData(range: Range, options: ProgressOptions = {}): Promise<this> {
    await this.expect('launchUpdateData', [GSTATE.LUPDATE], 'in LUPDATE (after launchStart, before launchMeasure)');
    const r = toRange(range);
    const chunk = options.chunkSize ?? 16 << 20;
    if (!Number.isSafeInteger(chunk) || chunk <= 0 || chunk % PAGE_SIZE !== 0)
      throw invalidArgValue('options.chunkSize', chunk, 'must be a positive multiple of 4096');
    for (let done = 0; done < r.length;) {
      const n = Math.min(chunk, r.length - done);
      await this.core.cmds.launchUpdateData({ ...r, offset: r.offset + done, length: n });
      done += n;
      options.onProgress?.(done, r.length);
    }
    return this;
  }
  /** LAUNCH_UPDATE_VMSA: encrypts every vCPU's state (SEV-ES only; after it, KVM hides the registers). */
  async launchUpdateVmsa(this: LaunchingGuest<true>): Promise<LaunchingGuest<true>> {
    if (!this.core.es) throw new KvmSevError('ERR_KVM_SEV_NOT_ES', 'launchUpdateVmsa is for SEV-ES guests; this guest is plain SEV');
    await this.expect('launchUpdateVmsa', [GSTATE.LUPDATE], 'in LUPDATE (after the memory, before launchMeasure)');
    await this.core.cmds.launchUpdateVmsa();
    return this;
  }
  /**
   * LAUNCH_MEASURE: `{ measure, mnonce }`, the measurement every guest-owner function takes as is
   * (`verifyMeasurement({ measurement: measured.measurement, … })`). Moves the guest to LSECRET.
   */
  async launchMeasure(): Promise<MeasuredGuest<ES>> {
    await this.expect('launchMeasure', [GSTATE.LUPDATE], 'in LUPDATE');
    const m = await this.core.cmds.launchMeasure();
    this.core.measurement = m;
    this.core.stage = 2;
    return new MeasuredGuest<ES>(this.core, m);
  }
}

/** Measured (LSECRET): the guest owner checks the measurement and may inject secrets. */
export class MeasuredGuest<ES extends boolean = boolean> extends SevGuestState {
  /** Type-level only: whether this is an SEV-ES launch (makes launchUpdateVmsa type-check only for ES). */
  declare protected readonly esBrand: ES;
  readonly measurement: LaunchMeasurement;
  /** @internal */
  constructor(core: LaunchCore, m: LaunchMeasurement) {
    super(core, 2);
    this.measurement = m;
  }
  /**
   * LAUNCH_SECRET: a packet built by the guest owner, written into guest memory at `guest`. The
   * owner's `buildSecret` returns `{ header, trans }`, so it goes in as is:
   * `measured.launchSecret({ ...packet, guest: mem.range(gpa, packet.trans.length) })`.
   */
  async launchSecret(packet: { header: Uint8Array; trans: Uint8Array; guest: Range }): Promise<this> {
    if (typeof packet !== 'object' || packet === null) throw invalidArgType('packet', 'object', packet);
    await this.expect('launchSecret', [GSTATE.LSECRET], 'in LSECRET (measured, not finished)');
    const guest = toRange(packet.guest, packet.trans.byteLength);
    const opts: SevPacketOptions = { header: packet.header, trans: packet.trans, guest };
    await this.core.cmds.launchSecret(opts);
    return this;
  }
  /** The 0xD0-byte attestation report (firmware API 0.23+). */
  getAttestationReport(mnonce: Uint8Array): Promise<Uint8Array> {
    this.live('getAttestationReport');
    return this.core.cmds.getAttestationReport(mnonce);
  }
  /** LAUNCH_FINISH: the guest can run. */
  async launchFinish(): Promise<RunningGuest<ES>> {
    await this.expect('launchFinish', [GSTATE.LSECRET], 'in LSECRET (after launchMeasure)');
    await this.core.cmds.launchFinish();
    this.core.stage = 3;
    return new RunningGuest<ES>(this.core);
  }
}

/** Running: launched; status, debug, attestation and teardown remain. */
export class RunningGuest<ES extends boolean = boolean> extends SevGuestState {
  /** Type-level only: whether this is an SEV-ES launch (makes launchUpdateVmsa type-check only for ES). */
  declare protected readonly esBrand: ES;
  /** @internal */
  constructor(core: LaunchCore) {
    super(core, 3);
  }
  get measurement(): LaunchMeasurement | undefined {
    return this.core.measurement;
  }
  getAttestationReport(mnonce: Uint8Array): Promise<Uint8Array> {
    this.live('getAttestationReport');
    return this.core.cmds.getAttestationReport(mnonce);
  }
}

/** Entry point of the type-state launch. */
export const SevLaunch = {
  /**
   * INIT2 on a KVM_X86_SEV_VM / SEV_ES_VM, or legacy INIT / ES_INIT on a default VM. The VM must
   * have no vCPUs yet (the kernel refuses INIT after vCPU creation).
   */
  async init<ES extends boolean = false>(vm: Vm, options: SevInitOptions & { es?: ES } = {}): Promise<InitializedGuest<ES>> {
    if (!vm || typeof vm !== 'object' || typeof vm.memoryEncryptOp !== 'function') throw invalidArgType('vm', 'a Vm', vm);
    const es = options.es === true;
    const mode = options.init ?? 'auto';
    const cmds = new SevGuestCommands(vm, options.platform ?? null);
    const useInit2 = mode === 'init2' || (mode === 'auto' && vm.type !== KVM_X86_DEFAULT_VM);
    if (useInit2) {
      const want = es ? KVM_X86_SEV_ES_VM : KVM_X86_SEV_VM;
      if (vm.type !== want) {
        throw new KvmSevError(
          'ERR_KVM_SEV_VM_TYPE',
          `INIT2 of an ${es ? 'SEV-ES' : 'SEV'} guest needs a VM created as ${es ? 'KVM_X86_SEV_ES_VM (3)' : 'KVM_X86_SEV_VM (2)'}; this VM has type ${vm.type}`,
        );
      }
      await cmds.init2({ vmsaFeatures: options.vmsaFeatures ?? 0n, ghcbVersion: options.ghcbVersion ?? 0 });
    } else {
      if (vm.type !== KVM_X86_DEFAULT_VM) {
        throw new KvmSevError(
          'ERR_KVM_SEV_VM_TYPE',
          `legacy INIT/ES_INIT needs a KVM_X86_DEFAULT_VM; this VM has type ${vm.type} (use init: 'init2')`,
        );
      }
      if (es) await cmds.esInit();
      else await cmds.init();
    }
    return new InitializedGuest<ES>(new LaunchCore(vm, cmds, es));
  },
};

export { guestStateName };

/**
 * `sev_mem_enc_ioctl` and the region ioctls of arch/x86/kvm/svm/sev.c, over a {@link SevVmPort}
 * (one handler per KVM_SEV_* id, named as there). Dispatch order: SEV disabled → ENOTTY; NULL argument → 0;
 * copy of the 24-byte kvm_sev_cmd → EFAULT; a mirror with an id other than LAUNCH_UPDATE_VMSA,
 * GUEST_STATUS, DBG_DECRYPT, DBG_ENCRYPT → EINVAL; (2021 profile) a sent source with an id other
 * than DBG_* → EPERM; an SNP guest with an id < 100 → EPERM; an unknown id → EINVAL. None of these
 * copy the struct back; after a known handler the whole struct is copied back (only `error` can
 * change, and it is not zeroed on entry: a handler failing before the firmware echoes the caller's).
 */
import {
  KVM_SEV,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
  SEV_FW_BLOB_MAX_SIZE,
  type SevFirmwareCommandName,
} from '../../../../uapi/constants.js';
import { kvm_enc_region } from '../../../../uapi/kvm-structs.js';
import {
  kvm_sev_attestation_report,
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_secret,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
  kvm_sev_receive_start,
  kvm_sev_receive_update_data,
  kvm_sev_send_start,
  kvm_sev_send_update_data,
  kvm_sev_snp_launch_finish,
  kvm_sev_snp_launch_start,
  kvm_sev_snp_launch_update,
} from '../../../../uapi/sev-structs.js';
import { E, fail, KernelErrno } from '../common/errno.js';
import type { FwResult, SevFirmware } from '../../psp/api.js';
import { copyUserBlob, padTo, type FwCall, type SevDriver } from '../ccp/sev-dev.js';
import type { UserMemory } from '../common/user-memory.js';
import type { AsidSpace } from './asid.js';
import { sevDbg } from './sev-dbg.js';
import type { SevMemory } from './sev-memory.js';
import { SevVm, type SevVmPort } from './sev-types.js';
import type { KernelProfile } from '../common/kernel-profile.js';
import { buildVmsa } from './vmsa.js';

/** The kvm_sev_cmd a handler works on; `error` is written back. */
export interface SevCmd {
  readonly id: number;
  readonly data: bigint;
  error: number;
  readonly sevFd: number;
}

export interface SevKernelConfig {
  readonly kernel: KernelProfile;
  /** kvm_amd's sev / sev_es parameters as set up (what the host really supports). */
  readonly enabled: boolean;
  readonly es: boolean;
  readonly snp: boolean;
  readonly mem: UserMemory;
  readonly driver: SevDriver;
  readonly asids: AsidSpace;
  readonly memory: SevMemory;
  /** Is `fd` an open /dev/sev fd of this host? (sev_issue_cmd_external_user) */
  isSevFd(fd: number): boolean;
  /** The VM behind a VM fd number of this host; 'other' for an fd that is not a VM, undefined for none. */
  vmByFd(fd: number): SevVm | 'other' | undefined;
  /** Supported vmsa_features (KVM_X86_SEV_VMSA_FEATURES). */
  readonly vmsaFeatures: bigint;
}

const MIRROR_OK: ReadonlySet<number> = new Set([
  KVM_SEV.LAUNCH_UPDATE_VMSA,
  KVM_SEV.GUEST_STATUS,
  KVM_SEV.DBG_DECRYPT,
  KVM_SEV.DBG_ENCRYPT,
]);
/** 2021 patch: LOCAL_SEND / LOCAL_RECEIVE. */
export const LOCAL_SEND = 22;
export const LOCAL_RECEIVE = 23;
/** SNP policy bits KVM accepts (KVM_SNP_POLICY_MASK_VALID). */
const SNP_POLICY_VALID = 0xffffn | (1n << 16n) | (1n << 17n) | (1n << 18n) | (1n << 19n) | (1n << 20n);
const PAGE = 4096;

interface LocalToken {
  valid: boolean;
  asid: number;
  handle: number;
  pagesLocked: number;
  regions: SevVm['info']['regions'];
}

export class MockSevKernel {
  readonly cfg: SevKernelConfig;
  private nextId = 1;
  /** The 2021 patch's sev_info_migration_hash (per host). */
  readonly tokens = new Map<bigint, LocalToken>();
  /** Every attached VM (for invariants and tests). */
  readonly vms = new Set<SevVm>();

  constructor(cfg: SevKernelConfig) {
    this.cfg = cfg;
  }

  private get legacy(): boolean {
    return this.cfg.kernel === 'local-migration-2021';
  }

  /** A VM joins (KVM_CREATE_VM → sev_vm_init: SEV types need INIT2). */
  attach(port: SevVmPort): SevVm {
    const t = port.vmType;
    const vm = new SevVm(this.nextId++, port, t === KVM_X86_SEV_VM || t === KVM_X86_SEV_ES_VM || t === KVM_X86_SNP_VM);
    this.vms.add(vm);
    return vm;
  }

  // ---------------------------------------------------------------------------------------------
  // Firmware plumbing

  private fw<T extends FwResult>(cmd: SevCmd | null, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): FwCall<T> {
    const r = this.cfg.driver.do(command, call, bytes);
    if (cmd && r.status !== undefined) cmd.error = r.status;
    return r;
  }

  /** sev_issue_cmd: through the /dev/sev fd the VM recorded (EBADF if it is not one any more). */
  private fwVm<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): T {
    return this.fwFd(vm.info.fd, cmd, command, call, bytes);
  }

  /** __sev_issue_cmd(fd): EBADF unless `fd` is an open /dev/sev of this host. */
  private fwFd<T extends FwResult>(fd: number, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): T {
    if (!this.cfg.isSevFd(fd)) fail(E.EBADF, `fd ${fd} is not an open /dev/sev`);
    const r = this.fw(cmd, command, call, bytes);
    if (r.errno) fail(r.errno);
    return r.out!;
  }

  private sevGuest(vm: SevVm): boolean {
    return vm.info.active;
  }

  private esGuest(vm: SevVm): boolean {
    return vm.info.active && vm.info.esActive;
  }

  private snpGuest(vm: SevVm): boolean {
    return vm.info.active && vm.info.snpActive;
  }

  private read<T>(codec: { size: number; decode(b: Uint8Array): T }, addr: bigint): T {
    return codec.decode(this.cfg.mem.copyFromUser(addr, codec.size));
  }

  private write(addr: bigint, bytes: Uint8Array): void {
    this.cfg.mem.copyToUser(addr, bytes);
  }

  // ---------------------------------------------------------------------------------------------
  // KVM_MEMORY_ENCRYPT_OP

  /** Returns 0 or throws a KernelErrno. */
  memEncOp(vm: SevVm, argAddr: bigint): number {
    if (!this.cfg.enabled) fail(E.ENOTTY, 'SEV is not enabled on this host');
    if (argAddr === 0n) return 0;
    const raw = this.cfg.mem.copyFromUser(argAddr, kvm_sev_cmd.size);
    const c = kvm_sev_cmd.decode(raw);
    const cmd: SevCmd = { id: c.id, data: c.data, error: c.error, sevFd: c.sev_fd };
    const info = vm.info;
    if (info.owner !== undefined && (this.legacy || !MIRROR_OK.has(cmd.id)))
      fail(E.EINVAL, 'a mirror VM accepts only LAUNCH_UPDATE_VMSA, GUEST_STATUS and DBG_*');
    if (this.legacy && info.infoToken !== 0n && cmd.id !== KVM_SEV.DBG_DECRYPT && cmd.id !== KVM_SEV.DBG_ENCRYPT && cmd.id !== LOCAL_SEND) {
      // The patch gates LOCAL_SEND too, which would make its own EEXIST unreachable; the stated
      // semantics (a second send answers EEXIST) win: LOCAL_SEND reaches its handler.
      fail(E.EPERM, 'the VM has staged its SEV state for local migration');
    }
    if (!this.legacy && this.snpGuest(vm) && cmd.id < 100) fail(E.EPERM, 'an SNP guest accepts only SNP commands');
    const handler = this.handler(cmd.id);
    if (!handler) fail(E.EINVAL, `unknown KVM_SEV command ${cmd.id}`);
    let errno = 0;
    try {
      handler(vm, cmd);
    } catch (e) {
      if (!(e instanceof KernelErrno)) throw e;
      errno = e.errno;
    }
    this.write(argAddr, kvm_sev_cmd.encode({ id: c.id, data: c.data, error: cmd.error >>> 0, sev_fd: c.sev_fd }));
    if (errno) fail(errno);
    return 0;
  }

  private handler(id: number): ((vm: SevVm, cmd: SevCmd) => void) | undefined {
    const legacy = this.legacy;
    const v72 = this.cfg.kernel === '7.2';
    switch (id) {
      case KVM_SEV.INIT:
        return (vm, cmd) => this.guestInit(vm, cmd, false);
      case KVM_SEV.ES_INIT:
        return (vm, cmd) => {
          if (!this.cfg.es) fail(E.ENOTTY, 'SEV-ES is not enabled');
          this.guestInit(vm, cmd, true);
        };
      case KVM_SEV.LAUNCH_START:
        return (vm, cmd) => this.launchStart(vm, cmd);
      case KVM_SEV.LAUNCH_UPDATE_DATA:
        return (vm, cmd) => this.launchUpdateData(vm, cmd);
      case KVM_SEV.LAUNCH_UPDATE_VMSA:
        return (vm, cmd) => this.launchUpdateVmsa(vm, cmd);
      case KVM_SEV.LAUNCH_SECRET:
        return (vm, cmd) => this.launchSecret(vm, cmd);
      case KVM_SEV.LAUNCH_MEASURE:
        return (vm, cmd) => this.launchMeasure(vm, cmd);
      case KVM_SEV.LAUNCH_FINISH:
        return (vm, cmd) => this.simple(vm, cmd, 'LAUNCH_FINISH', (fw, h) => fw.launchFinish(h));
      case KVM_SEV.SEND_START:
        return (vm, cmd) => this.sendStart(vm, cmd);
      case KVM_SEV.SEND_UPDATE_DATA:
        return (vm, cmd) => this.sendUpdateData(vm, cmd);
      case KVM_SEV.SEND_FINISH:
        return (vm, cmd) => this.simple(vm, cmd, 'SEND_FINISH', (fw, h) => fw.sendFinish(h));
      case KVM_SEV.RECEIVE_START:
        return (vm, cmd) => this.receiveStart(vm, cmd);
      case KVM_SEV.RECEIVE_UPDATE_DATA:
        return (vm, cmd) => this.receiveUpdateData(vm, cmd);
      case KVM_SEV.RECEIVE_FINISH:
        return (vm, cmd) => this.simple(vm, cmd, 'RECEIVE_FINISH', (fw, h) => fw.receiveFinish(h));
      case KVM_SEV.GUEST_STATUS:
        return (vm, cmd) => this.guestStatus(vm, cmd);
      case KVM_SEV.DBG_DECRYPT:
        return (vm, cmd) => this.dbg(vm, cmd, true);
      case KVM_SEV.DBG_ENCRYPT:
        return (vm, cmd) => this.dbg(vm, cmd, false);
      case KVM_SEV.GET_ATTESTATION_REPORT:
        return (vm, cmd) => this.attestation(vm, cmd);
      case KVM_SEV.SEND_CANCEL:
        return (vm, cmd) => this.simple(vm, cmd, 'SEND_CANCEL', (fw, h) => fw.sendCancel(h));
      case 22:
        return legacy ? (vm, cmd) => this.localSend(vm, cmd) : (vm, cmd) => this.init2(vm, cmd);
      case 23:
        return legacy ? (vm, cmd) => this.localReceive(vm, cmd) : undefined;
      case KVM_SEV.SNP_LAUNCH_START:
        return legacy ? undefined : (vm, cmd) => this.snpLaunchStart(vm, cmd);
      case KVM_SEV.SNP_LAUNCH_UPDATE:
        return legacy ? undefined : (vm, cmd) => this.snpLaunchUpdate(vm, cmd);
      case KVM_SEV.SNP_LAUNCH_FINISH:
        return legacy ? undefined : (vm, cmd) => this.snpLaunchFinish(vm, cmd);
      case KVM_SEV.SNP_ENABLE_REQ_CERTS:
        return v72 ? (vm) => this.snpEnableReqCerts(vm) : undefined;
      default:
        return undefined; // 10, 14, 19 are declared but not implemented
    }
  }

  // ---- init ----

  private guestInit(vm: SevVm, cmd: SevCmd, es: boolean): void {
    if (this.legacy) return this.guestInitLegacy(vm, cmd, es);
    if (vm.port.vmType !== KVM_X86_DEFAULT_VM) fail(E.EINVAL, 'INIT/ES_INIT need a KVM_X86_DEFAULT_VM');
    this.commonInit(vm, cmd, { vmsaFeatures: 0n, flags: 0, ghcbVersion: es ? 1 : 0 }, es ? KVM_X86_SEV_ES_VM : KVM_X86_SEV_VM);
  }

  /** 5.13's sev_guest_init (the 2021 kernel): a second INIT is EBUSY there. */
  private guestInitLegacy(vm: SevVm, cmd: SevCmd, es: boolean): void {
    const info = vm.info;
    if (vm.port.createdVcpus() > 0) fail(E.EINVAL, 'vCPUs already exist');
    if (info.active) fail(E.EBUSY, 'already initialised');
    info.esActive = es;
    let asid: number;
    try {
      asid = this.cfg.asids.allocate(es ? 'es' : 'sev', () => this.cfg.driver.dfFlush());
    } catch (e) {
      info.esActive = false;
      throw e;
    }
    const r = this.cfg.driver.platformInit();
    if (r.status !== undefined) cmd.error = r.status;
    if (r.errno) {
      this.cfg.asids.free(asid);
      info.esActive = false;
      fail(r.errno);
    }
    info.active = true;
    info.asid = asid;
  }

  private init2(vm: SevVm, cmd: SevCmd): void {
    if (!vm.info.needInit) fail(E.EINVAL, 'INIT2 needs an SEV-type VM that is not initialised');
    const t = vm.port.vmType;
    if (t !== KVM_X86_SEV_VM && t !== KVM_X86_SEV_ES_VM && t !== KVM_X86_SNP_VM) fail(E.EINVAL);
    const p = this.read(kvm_sev_init, cmd.data);
    this.commonInit(vm, cmd, { vmsaFeatures: p.vmsa_features, flags: p.flags, ghcbVersion: p.ghcb_version }, t);
  }

  /** __sev_guest_init(): every failure rolls everything back. */
  private commonInit(vm: SevVm, cmd: SevCmd, d: { vmsaFeatures: bigint; flags: number; ghcbVersion: number }, vmType: number): void {
    const info = vm.info;
    const es = vmType !== KVM_X86_SEV_VM;
    const snp = vmType === KVM_X86_SNP_VM;
    let valid = es ? this.cfg.vmsaFeatures : 0n;
    if (!snp) valid &= ~(1n << 9n); // SECURE_TSC is SNP-only
    if (vm.port.createdVcpus() > 0) fail(E.EINVAL, 'vCPUs already exist');
    if (d.flags !== 0) fail(E.EINVAL, 'flags must be 0');
    if (d.vmsaFeatures & ~valid) fail(E.EINVAL, 'unsupported vmsa_features');
    if (d.ghcbVersion > 2 || (!es && d.ghcbVersion !== 0)) fail(E.EINVAL, 'bad ghcb_version');
    let ghcb = d.ghcbVersion;
    if (es && ghcb === 0) ghcb = 2;
    if (snp && ghcb < 2 && this.cfg.kernel === '7.2') fail(E.EINVAL, 'SNP needs GHCB version 2');
    if (info.active) fail(E.EINVAL, 'already initialised');
    info.active = true;
    info.esActive = es;
    info.vmsaFeatures = d.vmsaFeatures | (snp ? 1n : 0n);
    info.ghcbVersion = ghcb;
    try {
      info.asid = this.cfg.asids.allocate(es ? 'es' : 'sev', () => this.cfg.driver.dfFlush());
    } catch (e) {
      info.vmsaFeatures = 0n;
      info.esActive = false;
      info.active = false;
      throw e;
    }
    const r = this.cfg.driver.platformInit();
    if (r.errno) {
      cmd.error = r.status ?? 0;
      this.cfg.asids.free(info.asid);
      info.asid = 0;
      info.vmsaFeatures = 0n;
      info.esActive = false;
      info.active = false;
      fail(r.errno);
    }
    info.needInit = false;
  }

  // ---- launch ----

  /** sev_bind_asid (+ the DF_FLUSH the 2021 kernel issued first): ACTIVATE(handle, asid). */
  private bindAsid(vm: SevVm, cmd: SevCmd, handle: number): number {
    if (this.legacy) {
      this.cfg.driver.firmware.wbinvd?.();
      const f = this.fw(cmd, 'DF_FLUSH', (fw) => fw.dfFlush());
      if (f.errno) return f.errno;
    }
    return this.fw(cmd, 'ACTIVATE', (fw) => fw.activate(handle, vm.info.asid)).errno;
  }

  private decommission(handle: number): void {
    this.fw(null, 'DECOMMISSION', (fw) => fw.decommission(handle));
  }

  /** sev_unbind_asid: DEACTIVATE then DECOMMISSION (nothing for handle 0). */
  private unbindAsid(handle: number): void {
    if (!handle) return;
    this.fw(null, 'DEACTIVATE', (fw) => fw.deactivate(handle));
    this.decommission(handle);
  }

  private launchStart(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_launch_start, cmd.data);
    vm.info.policy = p.policy;
    const dh = p.dh_uaddr ? copyUserBlob(this.cfg.mem, p.dh_uaddr, p.dh_len) : null;
    const session = p.session_uaddr ? copyUserBlob(this.cfg.mem, p.session_uaddr, p.session_len) : null;
    const out = this.fwFd(cmd.sevFd, cmd, 'LAUNCH_START', (fw) =>
      fw.launchStart({ handle: p.handle, policy: p.policy, dhCert: dh, session }),
    );
    const handle = out.handle;
    const bound = this.bindAsid(vm, cmd, handle);
    if (bound) {
      this.decommission(handle);
      fail(bound);
    }
    try {
      this.write(cmd.data, kvm_sev_launch_start.encode({ ...p, handle }));
    } catch (e) {
      this.unbindAsid(handle);
      throw e;
    }
    vm.info.handle = handle;
    vm.info.fd = cmd.sevFd;
  }

  private launchUpdateData(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_launch_update_data, cmd.data);
    const sm = this.cfg.memory;
    const pin = sm.pin(vm, p.uaddr, BigInt(p.len));
    try {
      for (const range of sm.physRanges(vm.port.memslots(), pin.segments, p.uaddr, p.len)) {
        this.fwVm(vm, cmd, 'LAUNCH_UPDATE_DATA', (fw) => fw.launchUpdateData(vm.info.handle, range), range.bytes.byteLength);
      }
    } finally {
      sm.unpin(vm, pin);
    }
  }

  private launchUpdateVmsa(vm: SevVm, cmd: SevCmd): void {
    if (!this.esGuest(vm)) fail(E.ENOTTY);
    for (const v of vm.port.vcpus()) {
      if (v.guestDebug()) fail(E.EINVAL, 'KVM_SET_GUEST_DEBUG is not supported for SEV-ES guests');
      if (v.isProtected()) fail(E.EINVAL, 'the VMSA is already encrypted');
      const st = v.registerState();
      if (st.dr7 & ~0x400n) fail(E.EINVAL, 'DR7 is not at its reset value');
      const page = buildVmsa(st, vm.port.vmType, vm.info.vmsaFeatures);
      const kp = this.cfg.mem.kernelPage();
      kp.bytes.set(page);
      this.fwVm(vm, cmd, 'LAUNCH_UPDATE_VMSA', (fw) => fw.launchUpdateVmsa(vm.info.handle, { paddr: kp.paddr, bytes: kp.bytes }), PAGE);
      v.setProtected(true, kp.bytes);
    }
  }

  private launchSecret(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_launch_secret, cmd.data);
    const sm = this.cfg.memory;
    const pin = sm.pin(vm, p.guest_uaddr, BigInt(p.guest_len));
    try {
      const ranges = sm.physRanges(vm.port.memslots(), pin.segments, p.guest_uaddr, p.guest_len);
      if (pin.segments.length !== 1 || ranges.length !== 1) fail(E.EINVAL, 'the guest pages are not physically contiguous');
      const trans = copyUserBlob(this.cfg.mem, p.trans_uaddr, p.trans_len);
      const header = copyUserBlob(this.cfg.mem, p.hdr_uaddr, p.hdr_len);
      this.fwVm(
        vm,
        cmd,
        'LAUNCH_UPDATE_SECRET',
        (fw) => fw.launchSecret(vm.info.handle, { header, guest: ranges[0]!, trans }),
        p.guest_len,
      );
    } finally {
      sm.unpin(vm, pin);
    }
  }

  /** LAUNCH_MEASURE and GET_ATTESTATION_REPORT share the length-query rules. */
  private launchMeasure(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_launch_measure, cmd.data);
    const withBlob = p.len !== 0 && p.uaddr !== 0n;
    if (withBlob && p.len > SEV_FW_BLOB_MAX_SIZE) fail(E.EINVAL, 'len > 16 KiB');
    const r = this.fwOutcome(vm, cmd, 'LAUNCH_MEASURE', (fw) => fw.launchMeasure(vm.info.handle, withBlob ? p.len : 0));
    this.sizedWriteBack(cmd, r, p.len, withBlob ? p.uaddr : 0n, (len) => kvm_sev_launch_measure.encode({ ...p, len }));
  }

  private attestation(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_attestation_report, cmd.data);
    const withBlob = p.len !== 0 && p.uaddr !== 0n;
    if (withBlob && p.len > SEV_FW_BLOB_MAX_SIZE) fail(E.EINVAL, 'len > 16 KiB');
    const mnonce = withBlob ? p.mnonce : new Uint8Array(16);
    const r = this.fwOutcome(vm, cmd, 'ATTESTATION_REPORT', (fw) => fw.attestation(vm.info.handle, mnonce, withBlob ? p.len : 0));
    this.sizedWriteBack(cmd, r, p.len, withBlob ? p.uaddr : 0n, (len) => kvm_sev_attestation_report.encode({ ...p, len }));
  }

  /** sev_issue_cmd with the outcome kept (the caller decides what to write back). */
  private fwOutcome<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T): FwCall<T> {
    if (!this.cfg.isSevFd(vm.info.fd)) fail(E.EBADF, `fd ${vm.info.fd} is not an open /dev/sev`);
    return this.fw(cmd, command, call);
  }

  /**
   * The query rules: len 0 → the firmware's length is written back and its result returned; an error
   * with len ≠ 0 writes nothing back; success copies the whole buffer (zero-padded) and `len` = bytes written.
   */
  private sizedWriteBack(
    cmd: SevCmd,
    r: FwCall<{ length: number; data?: Uint8Array } & FwResult>,
    len: number,
    uaddr: bigint,
    encode: (len: number) => Uint8Array,
  ): void {
    let errno = r.errno;
    if (len !== 0) {
      if (errno) fail(errno);
      if (uaddr !== 0n) {
        try {
          this.write(uaddr, padTo(r.out?.data, len));
        } catch {
          errno = E.EFAULT;
        }
      }
    }
    this.write(cmd.data, encode(r.out?.length ?? 0));
    if (errno) fail(errno);
  }

  private simple(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware, handle: number) => FwResult): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    this.fwVm(vm, cmd, command, (fw) => call(fw, vm.info.handle));
  }

  private guestStatus(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const handle = vm.info.handle;
    const out = this.fwVm(vm, cmd, 'GUEST_STATUS', (fw) => fw.guestStatus(handle));
    this.write(cmd.data, kvm_sev_guest_status.encode({ handle, policy: out.policy, state: out.state }));
  }

  private dbg(vm: SevVm, cmd: SevCmd, decrypt: boolean): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_dbg, cmd.data);
    sevDbg(
      {
        mem: this.cfg.mem,
        memory: this.cfg.memory,
        vm,
        issue: (dec, src, dst) =>
          this.fwVm(
            vm,
            cmd,
            dec ? 'DBG_DECRYPT' : 'DBG_ENCRYPT',
            (fw) => (dec ? fw.dbgDecrypt(vm.info.handle, src, dst) : fw.dbgEncrypt(vm.info.handle, src, dst)),
            src.bytes.byteLength,
          ),
      },
      p.src_uaddr,
      p.dst_uaddr,
      p.len,
      decrypt,
    );
  }

  // ---- migration ----

  private sendStart(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_send_start, cmd.data);
    const handle = vm.info.handle;
    if (p.session_len === 0) {
      const empty = new Uint8Array(0);
      const r = this.fwOutcome(vm, cmd, 'SEND_START', (fw) =>
        fw.sendStart(handle, { pdhCert: empty, platCerts: empty, amdCerts: empty, sessionCapacity: 0 }),
      );
      this.write(cmd.data, kvm_sev_send_start.encode({ ...p, session_len: r.out?.sessionLength ?? 0 }));
      if (r.errno) fail(r.errno);
      return;
    }
    if (!p.pdh_cert_uaddr || !p.pdh_cert_len || !p.session_uaddr || p.session_len > SEV_FW_BLOB_MAX_SIZE) fail(E.EINVAL);
    const mem = this.cfg.mem;
    const pdhCert = copyUserBlob(mem, p.pdh_cert_uaddr, p.pdh_cert_len);
    const platCerts = copyUserBlob(mem, p.plat_certs_uaddr, p.plat_certs_len);
    const amdCerts = copyUserBlob(mem, p.amd_certs_uaddr, p.amd_certs_len);
    const r = this.fwOutcome(vm, cmd, 'SEND_START', (fw) =>
      fw.sendStart(handle, { pdhCert, platCerts, amdCerts, sessionCapacity: p.session_len }),
    );
    let errno = r.errno;
    if (!errno) {
      try {
        this.write(p.session_uaddr, padTo(r.out?.session, p.session_len));
      } catch {
        fail(E.EFAULT);
      }
    }
    this.write(cmd.data, kvm_sev_send_start.encode({ ...p, policy: r.out?.policy ?? 0, session_len: r.out?.sessionLength ?? 0 }));
    if (errno) fail(errno);
    errno = 0;
  }

  private sendUpdateData(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_send_update_data, cmd.data);
    const handle = vm.info.handle;
    if (p.trans_len === 0 || p.hdr_len === 0) {
      const r = this.fwOutcome(vm, cmd, 'SEND_UPDATE_DATA', (fw) =>
        fw.sendUpdateData(handle, { guest: { paddr: 0n, bytes: new Uint8Array(0) }, hdrCapacity: 0, transCapacity: 0 }),
      );
      this.write(cmd.data, kvm_sev_send_update_data.encode({ ...p, hdr_len: r.out?.hdrLength ?? 0, trans_len: r.out?.transLength ?? 0 }));
      if (r.errno) fail(r.errno);
      return;
    }
    if (!p.trans_uaddr || !p.guest_uaddr || !p.guest_len || !p.hdr_uaddr) fail(E.EINVAL);
    const offset = Number(p.guest_uaddr & 0xfffn);
    if (p.guest_len > PAGE || p.guest_len + offset > PAGE) fail(E.EINVAL, 'the packet crosses a page');
    const sm = this.cfg.memory;
    const pin = sm.pin(vm, p.guest_uaddr & ~0xfffn, BigInt(PAGE));
    try {
      if (p.hdr_len > 4 << 20 || p.trans_len > 4 << 20) fail(E.ENOMEM);
      const guest = sm.physRanges(vm.port.memslots(), pin.segments, p.guest_uaddr, p.guest_len)[0]!;
      const out = this.fwVm(
        vm,
        cmd,
        'SEND_UPDATE_DATA',
        (fw) => fw.sendUpdateData(handle, { guest, hdrCapacity: p.hdr_len, transCapacity: p.trans_len }),
        p.guest_len,
      );
      this.write(p.trans_uaddr, padTo(out.trans, p.trans_len));
      this.write(p.hdr_uaddr, padTo(out.header, p.hdr_len));
    } finally {
      sm.unpin(vm, pin);
    }
  }

  private receiveStart(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_receive_start, cmd.data);
    if (!p.pdh_uaddr || !p.pdh_len || !p.session_uaddr || !p.session_len) fail(E.EINVAL);
    const pdhCert = copyUserBlob(this.cfg.mem, p.pdh_uaddr, p.pdh_len);
    const session = copyUserBlob(this.cfg.mem, p.session_uaddr, p.session_len);
    const out = this.fwFd(cmd.sevFd, cmd, 'RECEIVE_START', (fw) =>
      fw.receiveStart({ handle: p.handle, policy: p.policy, pdhCert, session }),
    );
    const handle = out.handle;
    const bound = this.bindAsid(vm, cmd, handle);
    if (bound) {
      this.decommission(handle);
      fail(bound);
    }
    try {
      this.write(cmd.data, kvm_sev_receive_start.encode({ ...p, handle }));
    } catch (e) {
      this.unbindAsid(handle);
      throw e;
    }
    vm.info.handle = handle;
    vm.info.fd = cmd.sevFd;
  }

  private receiveUpdateData(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.EINVAL, 'not an SEV guest'); // EINVAL here, not ENOTTY
    const p = this.read(kvm_sev_receive_update_data, cmd.data);
    if (!p.hdr_uaddr || !p.hdr_len || !p.guest_uaddr || !p.guest_len || !p.trans_uaddr || !p.trans_len) fail(E.EINVAL);
    const offset = Number(p.guest_uaddr & 0xfffn);
    if (p.guest_len > PAGE || p.guest_len + offset > PAGE) fail(E.EINVAL, 'the packet crosses a page');
    const header = copyUserBlob(this.cfg.mem, p.hdr_uaddr, p.hdr_len);
    const trans = copyUserBlob(this.cfg.mem, p.trans_uaddr, p.trans_len);
    const sm = this.cfg.memory;
    const pin = sm.pin(vm, p.guest_uaddr & ~0xfffn, BigInt(PAGE));
    try {
      const guest = sm.physRanges(vm.port.memslots(), pin.segments, p.guest_uaddr, p.guest_len)[0]!;
      this.fwVm(vm, cmd, 'RECEIVE_UPDATE_DATA', (fw) => fw.receiveUpdateData(vm.info.handle, { header, guest, trans }), p.guest_len);
    } finally {
      sm.unpin(vm, pin);
    }
  }

  // ---- SNP (kernel gates only: the mock firmware has no SNP commands) ----

  private snpLaunchStart(vm: SevVm, cmd: SevCmd): void {
    if (!this.snpGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_snp_launch_start, cmd.data);
    if (vm.info.snpContext) fail(E.EINVAL, 'a launch context exists');
    if (p.flags !== 0) fail(E.EINVAL, 'flags must be 0');
    if (p.policy & ~SNP_POLICY_VALID) fail(E.EINVAL, 'unsupported policy bits');
    if (!(p.policy & (1n << 17n))) fail(E.EINVAL, 'policy bit 17 (RSVD_MBO) must be set');
    if (this.cfg.kernel === '6.12' && (!(p.policy & (1n << 16n)) || p.policy & (1n << 20n)))
      fail(E.EINVAL, '6.12 needs SMT and refuses SINGLE_SOCKET');
    fail(E.ENOTTY, 'SNP_GCTX_CREATE failed: the mock firmware models no SNP');
  }

  private snpLaunchUpdate(vm: SevVm, cmd: SevCmd): void {
    if (!this.snpGuest(vm) || !vm.info.snpContext) fail(E.EINVAL, 'no SNP launch context');
    this.read(kvm_sev_snp_launch_update, cmd.data);
  }

  private snpLaunchFinish(vm: SevVm, cmd: SevCmd): void {
    if (!this.snpGuest(vm)) fail(E.ENOTTY);
    if (!vm.info.snpContext) fail(E.EINVAL, 'no SNP launch context');
    this.read(kvm_sev_snp_launch_finish, cmd.data);
  }

  private snpEnableReqCerts(vm: SevVm): void {
    if (vm.port.createdVcpus() > 0 || !this.snpGuest(vm)) fail(E.EINVAL);
    vm.info.snpCerts = true;
  }

  // ---- 2021 local migration (seed 000) ----

  private localSend(vm: SevVm, cmd: SevCmd): void {
    const info = vm.info;
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    if (info.esActive) fail(E.EPERM, 'SEV-ES guests cannot be sent locally');
    if (info.infoToken !== 0n) fail(E.EEXIST, 'already sent');
    this.cfg.mem.copyFromUser(cmd.data, 8);
    let token = 0n;
    for (let i = 0; i < 3 && token === 0n; i++) {
      const t = randomU64();
      if (t !== 0n && !this.tokens.has(t)) token = t;
    }
    if (token === 0n) fail(E.EFAULT, 'no unique token');
    const entry: LocalToken = { valid: true, asid: info.asid, handle: info.handle, pagesLocked: info.pagesLocked, regions: info.regions };
    info.regions = [];
    this.tokens.set(token, entry);
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, token, true);
    try {
      this.write(cmd.data, out);
    } catch (e) {
      this.tokens.delete(token);
      info.regions = entry.regions;
      throw e;
    }
    info.infoToken = token;
  }

  private localReceive(vm: SevVm, cmd: SevCmd): void {
    const info = vm.info;
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    if (info.esActive) fail(E.EPERM, 'SEV-ES');
    if (info.handle !== 0) fail(E.EPERM, 'the target is already launched');
    if (info.regions.length > 0) fail(E.EPERM, 'the target has registered regions');
    const raw = this.cfg.mem.copyFromUser(cmd.data, 16);
    const token = new DataView(raw.buffer, raw.byteOffset).getBigUint64(0, true);
    const entry = this.tokens.get(token);
    if (!entry || !entry.valid) fail(E.EFAULT, 'unknown or used token');
    const old = { asid: info.asid, handle: info.handle, pagesLocked: info.pagesLocked, regions: info.regions };
    entry.valid = false;
    info.asid = entry.asid;
    info.handle = entry.handle;
    info.pagesLocked = entry.pagesLocked;
    info.regions = entry.regions;
    entry.regions = [];
    const out = raw.slice();
    new DataView(out.buffer).setUint32(8, info.handle, true);
    try {
      this.write(cmd.data, out);
    } catch {
      entry.regions = info.regions;
      entry.valid = true;
      Object.assign(info, old);
      fail(E.EFAULT);
    }
    this.cfg.asids.free(old.asid);
  }

  // ---------------------------------------------------------------------------------------------
  // KVM_MEMORY_ENCRYPT_REG_REGION / UNREG_REGION

  regRegion(vm: SevVm, argAddr: bigint): number {
    const r = this.read(kvm_enc_region, argAddr);
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    if (vm.info.owner) fail(E.EINVAL, 'a mirror has no regions');
    this.cfg.memory.register(vm, r.addr, r.size);
    return 0;
  }

  unregRegion(vm: SevVm, argAddr: bigint): number {
    const r = this.read(kvm_enc_region, argAddr);
    if (vm.info.owner) fail(E.EINVAL, 'a mirror has no regions');
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    this.cfg.memory.unregister(vm, r.addr, r.size);
    return 0;
  }

  /** Demand pinning: the guest touched [uaddr, uaddr+len) (for the hybrid). ENOMEM over the limit. */
  touch(vm: SevVm, uaddr: bigint, len: number): void {
    if (this.sevGuest(vm)) this.cfg.memory.touch(vm, uaddr, len);
  }

  // ---------------------------------------------------------------------------------------------
  // MOVE (206) and COPY (197): KVM_ENABLE_CAP on the destination with args[0] = source fd

  moveFrom(dst: SevVm, srcFd: number): void {
    this.moveFromVm(dst, this.sourceVm(srcFd));
  }

  copyFrom(dst: SevVm, srcFd: number): void {
    this.copyFromVm(dst, this.sourceVm(srcFd));
  }

  /** MOVE once the source fd is resolved (undefined: not a VM fd → EBADF). */
  moveFromVm(dst: SevVm, source: SevVm | undefined): void {
    const src = this.lockTwo(dst, source);
    const d = dst.info;
    const s = src.info;
    if (dst.port.vmType !== src.port.vmType || this.sevGuest(dst) || !this.sevGuest(src) || (!this.legacy && this.snpGuest(src))) {
      fail(E.EINVAL, 'MOVE needs an uninitialised destination of the same type and an SEV (non-SNP) source');
    }
    if (s.esActive) {
      const sv = src.port.vcpus();
      const dv = dst.port.vcpus();
      if (sv.length !== dv.length) fail(E.EINVAL, 'SEV-ES: the vCPU counts differ');
      if (sv.some((v) => !v.isProtected())) fail(E.EINVAL, 'SEV-ES: a source vCPU has no encrypted VMSA');
    }
    Object.assign(d, {
      active: true,
      asid: s.asid,
      handle: s.handle,
      pagesLocked: s.pagesLocked,
      owner: s.owner,
      esActive: s.esActive,
      vmsaFeatures: s.vmsaFeatures,
      needInit: false,
    });
    d.regions = s.regions;
    s.regions = [];
    Object.assign(s, { asid: 0, active: false, handle: 0, pagesLocked: 0, owner: undefined, esActive: false });
    for (const m of s.mirrors) {
      dst.port.hold?.();
      src.port.release?.();
      m.info.owner = dst;
      d.mirrors.add(m);
    }
    s.mirrors.clear();
    if (d.owner) {
      d.owner.info.mirrors.delete(src);
      d.owner.info.mirrors.add(dst);
    }
    if (d.esActive) {
      const sv = src.port.vcpus();
      dst.port.vcpus().forEach((v, i) => {
        v.setProtected(true, sv[i]!.vmsa());
        sv[i]!.setProtected(false);
      });
    }
    src.dead = true;
    src.port.markDead();
  }

  /** COPY once the source fd is resolved (undefined: not a VM fd → EBADF). */
  copyFromVm(dst: SevVm, source: SevVm | undefined): void {
    const src = this.lockTwo(dst, source);
    if (
      this.sevGuest(dst) ||
      !this.sevGuest(src) ||
      (!this.legacy && this.snpGuest(src)) ||
      src.info.owner ||
      dst.port.createdVcpus() > 0
    ) {
      fail(E.EINVAL, 'COPY needs an uninitialised mirror without vCPUs and an SEV (non-SNP, non-mirror) owner');
    }
    src.port.hold?.();
    src.info.mirrors.add(dst);
    Object.assign(dst.info, {
      owner: src,
      active: true,
      asid: src.info.asid,
      fd: src.info.fd,
      esActive: src.info.esActive,
      needInit: false,
      handle: src.info.handle,
    });
    dst.info.regions = [];
  }

  /** fd → VM, or undefined for no fd or a non-VM fd. */
  private sourceVm(fd: number): SevVm | undefined {
    const src = this.cfg.vmByFd(fd);
    return src === 'other' ? undefined : src;
  }

  /** EBADF for no VM; sev_lock_two_vms: dst == src → EINVAL. */
  private lockTwo(dst: SevVm, src: SevVm | undefined): SevVm {
    if (src === undefined) fail(E.EBADF, 'the source fd is not a KVM VM');
    if (src === dst) fail(E.EINVAL, 'source and destination are the same VM');
    return src;
  }

  // ---------------------------------------------------------------------------------------------
  // sev_vm_destroy() (the 2021 profile with the patch's token handling)

  destroy(vm: SevVm): void {
    if (vm.destroyed) return;
    if (vm.info.mirrors.size > 0) {
      vm.pendingDestroy = true; // the owner's context lives until its last mirror goes
      return;
    }
    vm.destroyed = true;
    this.vms.delete(vm);
    const info = vm.info;
    if (!info.active) return;
    if (info.owner) {
      const owner = info.owner;
      owner.info.mirrors.delete(vm);
      info.owner = undefined;
      info.active = false;
      owner.port.release?.();
      if (owner.pendingDestroy && owner.info.mirrors.size === 0) this.destroy(owner);
      return;
    }
    let migrated = false;
    if (info.infoToken !== 0n) {
      const entry = this.tokens.get(info.infoToken);
      if (entry) {
        migrated = !entry.valid;
        this.tokens.delete(info.infoToken);
        this.cfg.memory.releaseAll(vm, info.regions); // regions added after the send
        this.cfg.memory.releaseAll(vm, entry.regions);
      }
    } else {
      this.cfg.memory.releaseAll(vm, info.regions);
    }
    if (!migrated) {
      this.unbindAsid(info.handle);
      this.cfg.asids.free(info.asid);
    }
    info.active = false;
    info.asid = 0;
    info.handle = 0;
  }
}

function randomU64(): bigint {
  const b = new BigUint64Array(1);
  globalThis.crypto.getRandomValues(b);
  return b[0]!;
}

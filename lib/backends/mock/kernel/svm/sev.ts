/**
 * `sev_mem_enc_ioctl` and the region ioctls of arch/x86/kvm/svm/sev.c, over a {@link SevVmPort}:
 * the dispatch, INIT/ES_INIT/INIT2, the launch commands, GUEST_STATUS, the attestation report, the
 * SNP gates, the regions and sev_vm_destroy(). The other commands are in files of their own, as
 * sev-dbg.ts holds DBG_*: SEND_* and RECEIVE_* in sev-migration.ts, the 2021 LOCAL_SEND/RECEIVE in
 * sev-local-migration.ts, MOVE/COPY of the context in sev-enc-context.ts; they reach this file's
 * helpers through {@link SevCmdHelpers} (sev-cmd.ts).
 *
 * Dispatch order of sev_mem_enc_ioctl(): SEV disabled → ENOTTY; NULL argument → 0;
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
  PAGE_SIZE,
  SEV_FW_BLOB_MAX_SIZE,
  type SevFirmwareCommandName,
} from '../../../../uapi/constants.js';
import { kvm_enc_region } from '../../../../uapi/kvm-structs.js';
import { localMigrationIds } from '../../../../uapi/local-migration-structs.js';
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
  kvm_sev_snp_launch_finish,
  kvm_sev_snp_launch_start,
  kvm_sev_snp_launch_update,
} from '../../../../uapi/sev-structs.js';
import { E, fail, KernelErrno } from '../common/errno.js';
import type { FwResult, SevFirmware } from '../../psp/api.js';
import { copyUserBlob, padTo, type FwCall } from '../ccp/sev-dev.js';
import type { SevCmd, SevCmdHelpers, SevKernelConfig, StructCodec } from './sev-cmd.js';
import { sevDbg } from './sev-dbg.js';
import {
  sevCopyLocked,
  sevLockTwoVms,
  sevMoveLocked,
  sevUnlockTwoVms,
  sevVmCopyEncContextFrom,
  sevVmMoveEncContextFrom,
  sourceVm,
} from './sev-enc-context.js';
import { SevLocalMigration } from './sev-local-migration.js';
import {
  sevReceiveFinish,
  sevReceiveStart,
  sevReceiveUpdateData,
  sevSendCancel,
  sevSendFinish,
  sevSendStart,
  sevSendUpdateData,
} from './sev-migration.js';
import { SevVm, type SevVmPort } from './sev-types.js';
import { buildVmsa } from './vmsa.js';

const MIRROR_OK: ReadonlySet<number> = new Set([
  KVM_SEV.LAUNCH_UPDATE_VMSA,
  KVM_SEV.GUEST_STATUS,
  KVM_SEV.DBG_DECRYPT,
  KVM_SEV.DBG_ENCRYPT,
]);
/** The 2021 patch's LOCAL_SEND / LOCAL_RECEIVE ids (22, 23) on the 'local-migration-2021' kernel. */
const { LOCAL_SEND, LOCAL_RECEIVE } = localMigrationIds({ profile: 'local-migration-2021' });
/** SNP policy bits KVM accepts (KVM_SNP_POLICY_MASK_VALID). */
const SNP_POLICY_VALID = 0xffffn | (1n << 16n) | (1n << 17n) | (1n << 18n) | (1n << 19n) | (1n << 20n);

export class MockSevKernel implements SevCmdHelpers {
  readonly cfg: SevKernelConfig;
  private nextId = 1;
  /** The 2021 patch's LOCAL_SEND/LOCAL_RECEIVE, with its per-host tokens. */
  readonly localMigration: SevLocalMigration = new SevLocalMigration(this);
  /** Every attached VM (for invariants and tests). */
  readonly vms = new Set<SevVm>();

  constructor(cfg: SevKernelConfig) {
    this.cfg = cfg;
  }

  get legacy(): boolean {
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
  // Firmware plumbing and copies to and from user: the helpers every handler uses (SevCmdHelpers)

  private fw<T extends FwResult>(cmd: SevCmd | null, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): FwCall<T> {
    const r = this.cfg.driver.do(command, call, bytes);
    if (cmd && r.status !== undefined) cmd.error = r.status;
    return r;
  }

  /** sev_issue_cmd: through the /dev/sev fd the VM recorded (EBADF if it is not one any more). */
  fwVm<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): T {
    return this.fwFd(vm.info.fd, cmd, command, call, bytes);
  }

  /** __sev_issue_cmd(fd): EBADF unless `fd` is an open /dev/sev of this host. */
  fwFd<T extends FwResult>(fd: number, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T, bytes = 0): T {
    if (!this.cfg.isSevFd(fd)) fail(E.EBADF, `fd ${fd} is not an open /dev/sev`);
    const r = this.fw(cmd, command, call, bytes);
    if (r.errno) fail(r.errno);
    return r.out!;
  }

  sevGuest(vm: SevVm): boolean {
    return vm.info.active;
  }

  private esGuest(vm: SevVm): boolean {
    return vm.info.active && vm.info.esActive;
  }

  snpGuest(vm: SevVm): boolean {
    return vm.info.active && vm.info.snpActive;
  }

  read<T>(codec: StructCodec<T>, addr: bigint): T {
    return codec.decode(this.cfg.mem.copyFromUser(addr, codec.size));
  }

  write(addr: bigint, bytes: Uint8Array): void {
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
        return (vm, cmd) => sevSendStart(this, vm, cmd);
      case KVM_SEV.SEND_UPDATE_DATA:
        return (vm, cmd) => sevSendUpdateData(this, vm, cmd);
      case KVM_SEV.SEND_FINISH:
        return (vm, cmd) => sevSendFinish(this, vm, cmd);
      case KVM_SEV.RECEIVE_START:
        return (vm, cmd) => sevReceiveStart(this, vm, cmd);
      case KVM_SEV.RECEIVE_UPDATE_DATA:
        return (vm, cmd) => sevReceiveUpdateData(this, vm, cmd);
      case KVM_SEV.RECEIVE_FINISH:
        return (vm, cmd) => sevReceiveFinish(this, vm, cmd);
      case KVM_SEV.GUEST_STATUS:
        return (vm, cmd) => this.guestStatus(vm, cmd);
      case KVM_SEV.DBG_DECRYPT:
        return (vm, cmd) => this.dbg(vm, cmd, true);
      case KVM_SEV.DBG_ENCRYPT:
        return (vm, cmd) => this.dbg(vm, cmd, false);
      case KVM_SEV.GET_ATTESTATION_REPORT:
        return (vm, cmd) => this.attestation(vm, cmd);
      case KVM_SEV.SEND_CANCEL:
        return (vm, cmd) => sevSendCancel(this, vm, cmd);
      case KVM_SEV.INIT2: // also the 2021 kernel's LOCAL_SEND
        return legacy ? (vm, cmd) => this.localMigration.send(vm, cmd) : (vm, cmd) => this.init2(vm, cmd);
      case LOCAL_RECEIVE:
        return legacy ? (vm, cmd) => this.localMigration.receive(vm, cmd) : undefined;
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

  /** __sev_guest_init: every failure rolls everything back. */
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

  /** sev_decommission */
  private decommission(handle: number): void {
    this.fw(null, 'DECOMMISSION', (fw) => fw.decommission(handle));
  }

  /** sev_unbind_asid: DEACTIVATE then DECOMMISSION (nothing for handle 0). */
  private unbindAsid(handle: number): void {
    if (!handle) return;
    this.fw(null, 'DEACTIVATE', (fw) => fw.deactivate(handle));
    this.decommission(handle);
  }

  /** The tail of sev_launch_start() and sev_receive_start(): bind, write back, record (or undo). */
  bindGuest(vm: SevVm, cmd: SevCmd, handle: number, params: Uint8Array): void {
    const bound = this.bindAsid(vm, cmd, handle);
    if (bound) {
      this.decommission(handle);
      fail(bound);
    }
    try {
      this.write(cmd.data, params);
    } catch (e) {
      this.unbindAsid(handle);
      throw e;
    }
    vm.info.handle = handle;
    vm.info.fd = cmd.sevFd;
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
    this.bindGuest(vm, cmd, out.handle, kvm_sev_launch_start.encode({ ...p, handle: out.handle }));
  }

  private launchUpdateData(vm: SevVm, cmd: SevCmd): void {
    if (!this.sevGuest(vm)) fail(E.ENOTTY);
    const p = this.read(kvm_sev_launch_update_data, cmd.data);
    const sm = this.cfg.memory;
    const pin = sm.pin(vm, p.uaddr, BigInt(p.len));
    const issue = (): void => {
      for (const range of sm.eachPhysRange(vm.port.memslots(), pin.segments, p.uaddr, p.len)) {
        this.fwVm(vm, cmd, 'LAUNCH_UPDATE_DATA', (fw) => fw.launchUpdateData(vm.info.handle, range), range.bytes.byteLength);
      }
    };
    try {
      // A command per contiguous run, as the kernel's loop; the firmware may do their memory work in bulk.
      const fw = this.cfg.driver.firmware;
      if (fw.batch) fw.batch(issue);
      else issue();
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
      this.fwVm(
        vm,
        cmd,
        'LAUNCH_UPDATE_VMSA',
        (fw) => fw.launchUpdateVmsa(vm.info.handle, { paddr: kp.paddr, bytes: kp.bytes }),
        PAGE_SIZE,
      );
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
  fwOutcome<T extends FwResult>(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware) => T): FwCall<T> {
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

  simple(vm: SevVm, cmd: SevCmd, command: SevFirmwareCommandName, call: (fw: SevFirmware, handle: number) => FwResult): void {
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
        kernel: this.cfg.kernel,
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
  // MOVE (206) and COPY (197): KVM_ENABLE_CAP on the destination with args[0] = source fd (sev-enc-context.ts)

  moveFrom(dst: SevVm, srcFd: number): void {
    sevVmMoveEncContextFrom(this, dst, sourceVm(this, srcFd));
  }

  copyFrom(dst: SevVm, srcFd: number): void {
    sevVmCopyEncContextFrom(this, dst, sourceVm(this, srcFd));
  }

  /**
   * The first half of MOVE / COPY for a call that may wait: resolve the source fd and mark both VMs
   * (sev_lock_two_vms() up to its mutexes); `run` is the rest, with both VMs' kvm->lock held; `done`
   * unmarks them.
   */
  beginEncContext(dst: SevVm, srcFd: number, move: boolean): { src: SevVm; run(): void; done(): void } {
    const src = sevLockTwoVms(dst, sourceVm(this, srcFd));
    return {
      src,
      run: () => (move ? sevMoveLocked(this, dst, src) : sevCopyLocked(this, dst, src)),
      done: () => sevUnlockTwoVms(dst, src),
    };
  }

  /** MOVE once the source fd is resolved (undefined: not a VM fd → EBADF). */
  moveFromVm(dst: SevVm, source: SevVm | undefined): void {
    sevVmMoveEncContextFrom(this, dst, source);
  }

  /** COPY once the source fd is resolved (undefined: not a VM fd → EBADF). */
  copyFromVm(dst: SevVm, source: SevVm | undefined): void {
    sevVmCopyEncContextFrom(this, dst, source);
  }

  // ---------------------------------------------------------------------------------------------
  // sev_vm_destroy (the 2021 profile with the patch's token handling, sev-local-migration.ts)

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
    if (info.infoToken !== 0n) migrated = this.localMigration.destroySent(vm);
    else this.cfg.memory.releaseAll(vm, info.regions);
    if (!migrated) {
      this.unbindAsid(info.handle);
      this.cfg.asids.free(info.asid);
    }
    info.active = false;
    info.asid = 0;
    info.handle = 0;
  }
}

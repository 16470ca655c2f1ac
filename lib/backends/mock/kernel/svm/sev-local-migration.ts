/**
 * KVM_SEV_LOCAL_SEND / LOCAL_RECEIVE of the 2021 patch "KVM, SEV: Add support for SEV local
 * migration" (Peter Gonda, never merged; the mock's 'local-migration-2021' kernel): a VMM hands a
 * guest's SEV context to a new VMM on the same host. LOCAL_SEND stages the source's ASID, handle,
 * locked pages and regions under a random non-zero 64-bit token (the patch's
 * sev_info_migration_hash, one per host); LOCAL_RECEIVE on an initialised, unlaunched target redeems
 * the token once and takes the staged context over. sev_vm_destroy() of a staged source drops its
 * token; the context dies with the source only if nobody received it.
 */
import { E, fail } from '../common/errno.js';
import type { SevCmd, SevCmdHelpers } from './sev-cmd.js';
import type { SevVm } from './sev-types.js';

/** struct sev_info_migration_node: a staged context. */
export interface LocalToken {
  /** Cleared by the receive: the token is valid once. */
  valid: boolean;
  asid: number;
  handle: number;
  pagesLocked: number;
  regions: SevVm['info']['regions'];
}

export class SevLocalMigration {
  /** sev_info_migration_hash: token → staged context. */
  readonly tokens = new Map<bigint, LocalToken>();

  constructor(private readonly k: SevCmdHelpers) {}

  /** sev_local_send() */
  send(vm: SevVm, cmd: SevCmd): void {
    const info = vm.info;
    if (!this.k.sevGuest(vm)) fail(E.ENOTTY);
    if (info.esActive) fail(E.EPERM, 'SEV-ES guests cannot be sent locally');
    if (info.infoToken !== 0n) fail(E.EEXIST, 'already sent');
    this.k.cfg.mem.copyFromUser(cmd.data, 8); // struct kvm_sev_local_send
    // place_migration_node(): a few tries at a random token that is neither 0 nor in use.
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
      this.k.write(cmd.data, out);
    } catch (e) {
      this.tokens.delete(token);
      info.regions = entry.regions;
      throw e;
    }
    info.infoToken = token;
  }

  /** sev_local_receive(): the target's own ASID is freed once it has the staged one. */
  receive(vm: SevVm, cmd: SevCmd): void {
    const info = vm.info;
    if (!this.k.sevGuest(vm)) fail(E.ENOTTY);
    if (info.esActive) fail(E.EPERM, 'SEV-ES');
    if (info.handle !== 0) fail(E.EPERM, 'the target is already launched');
    if (info.regions.length > 0) fail(E.EPERM, 'the target has registered regions');
    const raw = this.k.cfg.mem.copyFromUser(cmd.data, 16); // struct kvm_sev_local_receive
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
      this.k.write(cmd.data, out);
    } catch {
      entry.regions = info.regions;
      entry.valid = true;
      Object.assign(info, old);
      fail(E.EFAULT);
    }
    this.k.cfg.asids.free(old.asid);
  }

  /**
   * sev_vm_destroy()'s part for a VM that did LOCAL_SEND: its token goes, and so do its pinned
   * regions (those it staged and any registered after the send). Returns whether a receiver took
   * the context, in which case the ASID and the handle are the receiver's and stay.
   */
  destroySent(vm: SevVm): boolean {
    const info = vm.info;
    const entry = this.tokens.get(info.infoToken);
    if (!entry) return false;
    this.tokens.delete(info.infoToken);
    this.k.cfg.memory.releaseAll(vm, info.regions); // regions added after the send
    this.k.cfg.memory.releaseAll(vm, entry.regions);
    return !entry.valid;
  }
}

function randomU64(): bigint {
  const b = new BigUint64Array(1);
  globalThis.crypto.getRandomValues(b);
  return b[0]!;
}

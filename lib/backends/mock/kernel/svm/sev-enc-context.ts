/**
 * KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM and KVM_CAP_VM_COPY_ENC_CONTEXT_FROM (KVM_ENABLE_CAP on the
 * destination VM, args[0] = the source VM's fd), as arch/x86/kvm/svm/sev.c does them. MOVE is
 * intra-host migration: the destination takes the source's whole SEV context (ASID, handle, pinned
 * regions, mirrors, and for SEV-ES each vCPU's encrypted VMSA), and the source is dead (every ioctl
 * EIO). COPY makes the destination a mirror that shares the source's ASID and handle (for an
 * in-guest helper such as a migration agent); the source lives while a mirror holds it.
 */
import { E, fail } from '../common/errno.js';
import { syncOwner } from '../common/kvm-mutex.js';
import type { SevCmdHelpers } from './sev-cmd.js';
import type { SevVm } from './sev-types.js';

/** The source VM of an fd number: undefined for no fd or a fd that is not a VM. */
export function sourceVm(k: SevCmdHelpers, fd: number): SevVm | undefined {
  const src = k.cfg.vmByFd(fd);
  return src === 'other' ? undefined : src;
}

/**
 * sev_lock_two_vms() up to its mutexes: EBADF for no source VM, EINVAL for the destination itself,
 * EBUSY when either VM is already in a MOVE or COPY (migration_in_progress, a cmpxchg: it never
 * waits). Marks both VMs; {@link sevUnlockTwoVms} clears them. The caller then takes the
 * destination's kvm->lock, then the source's.
 */
export function sevLockTwoVms(dst: SevVm, src: SevVm | undefined): SevVm {
  if (src === undefined) fail(E.EBADF, 'the source fd is not a KVM VM');
  if (src === dst) fail(E.EINVAL, 'source and destination are the same VM');
  if (dst.info.migrationInProgress) fail(E.EBUSY, 'the destination VM is already in a MOVE or COPY of an encryption context');
  if (src.info.migrationInProgress) fail(E.EBUSY, 'the source VM is already in a MOVE or COPY of an encryption context');
  dst.info.migrationInProgress = true;
  src.info.migrationInProgress = true;
  src.port.hold?.(); // the fd reference the kernel holds on the source for the call
  return src;
}

/** sev_unlock_two_vms(), after the mutexes are released. */
export function sevUnlockTwoVms(dst: SevVm, src: SevVm): void {
  dst.info.migrationInProgress = false;
  src.info.migrationInProgress = false;
  src.port.release?.();
}

/** A whole MOVE or COPY in a synchronous call: both VMs marked, both mutexes taken, then `body`. */
function lockedTwo(dst: SevVm, source: SevVm | undefined, body: (src: SevVm) => void): void {
  const src = sevLockTwoVms(dst, source);
  const me = syncOwner();
  try {
    dst.lock.lockSync(me);
    try {
      src.lock.lockSync(me);
      try {
        body(src);
      } finally {
        src.lock.unlock(me);
      }
    } finally {
      dst.lock.unlock(me);
    }
  } finally {
    sevUnlockTwoVms(dst, src);
  }
}

/** sev_vm_move_enc_context_from() once the source fd is resolved (undefined: not a VM fd → EBADF). */
export function sevVmMoveEncContextFrom(k: SevCmdHelpers, dst: SevVm, source: SevVm | undefined): void {
  lockedTwo(dst, source, (src) => sevMoveLocked(k, dst, src));
}

/** sev_vm_copy_enc_context_from() once the source fd is resolved (undefined: not a VM fd → EBADF). */
export function sevVmCopyEncContextFrom(k: SevCmdHelpers, dst: SevVm, source: SevVm | undefined): void {
  lockedTwo(dst, source, (src) => sevCopyLocked(k, dst, src));
}

/** MOVE with both VMs locked: the checks, sev_check_source_vcpus(), sev_migrate_from(), kvm_vm_dead(). */
export function sevMoveLocked(k: SevCmdHelpers, dst: SevVm, src: SevVm): void {
  const d = dst.info;
  const s = src.info;
  if (dst.port.vmType !== src.port.vmType || k.sevGuest(dst) || !k.sevGuest(src) || (!k.legacy && k.snpGuest(src))) {
    fail(E.EINVAL, 'MOVE needs an uninitialised destination of the same type and an SEV (non-SNP) source');
  }
  if (s.esActive) {
    // sev_check_source_vcpus()
    const sv = src.port.vcpus();
    const dv = dst.port.vcpus();
    if (sv.length !== dv.length) fail(E.EINVAL, 'SEV-ES: the vCPU counts differ');
    if (sv.some((v) => !v.isProtected())) fail(E.EINVAL, 'SEV-ES: a source vCPU has no encrypted VMSA');
  }
  // sev_migrate_from()
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
  src.port.markDead(); // kvm_vm_dead()
}

/** COPY with both VMs locked: the checks, then the destination mirrors the source's context. */
export function sevCopyLocked(k: SevCmdHelpers, dst: SevVm, src: SevVm): void {
  if (k.sevGuest(dst) || !k.sevGuest(src) || (!k.legacy && k.snpGuest(src)) || src.info.owner || dst.port.createdVcpus() > 0) {
    fail(E.EINVAL, 'COPY needs an uninitialised mirror without vCPUs and an SEV (non-SNP, non-mirror) owner');
  }
  src.port.hold?.(); // kvm_get_kvm(): the mirror holds its owner
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

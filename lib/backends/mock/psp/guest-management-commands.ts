/**
 * Guest management (SEV API spec ch. 6; docs/sev-reference.md §2.2 "Activation"; check order from AMD-ASPFW): DECOMMISSION,
 * ACTIVATE, DEACTIVATE, GUEST_STATUS, and the pending-activation completion at LAUNCH_FINISH /
 * RECEIVE_FINISH.
 */
import { GSTATE, PSTATE, SEV_POLICY } from '../../../uapi/constants.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, GuestStatusOut } from './api.js';
import { FirmwareCore, OK, fail } from './firmware-core.js';
import type { GuestContext } from './guest-context.js';

/** DECOMMISSION (0x20): WORKING; handle; an activated guest ⇒ ACTIVE; last guest ⇒ PSTATE INIT. */
export function decommission(fw: FirmwareCore, handle: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.activation !== 'none') return fail(SEV_RET.ACTIVE);
  fw.guests.remove(handle);
  if (fw.guests.count === 0) fw.pstate = PSTATE.INIT;
  return OK;
}

/** Is `asid` in the range this guest may use? ES guests: 1 ≤ asid < MIN_SEV_ASID; others: MIN_SEV_ASID ≤ asid ≤ max. */
export function asidFitsGuest(fw: FirmwareCore, g: GuestContext, asid: number): boolean {
  const min = fw.profile.minSevAsid;
  return g.es ? asid >= 1 && asid < min : asid >= min && asid <= fw.profile.maxSevAsid;
}

/**
 * ACTIVATE (0x21), checks in order: WORKING; handle; ASID 0 or > max ⇒ INVALID_ASID; ASID owned by
 * a guest ⇒ ASID_OWNED; guest already activated ⇒ ACTIVE; guest SENT ⇒ INVALID_GUEST_STATE; ASID
 * dirty ⇒ DF_FLUSH_REQUIRED; ASID outside the guest's ES / non-ES range ⇒ INVALID_ASID. Before
 * RUNNING the activation is pending (the ASID is "allocated") until LAUNCH/RECEIVE_FINISH.
 */
export function activate(fw: FirmwareCore, handle: number, asid: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (!Number.isInteger(asid) || asid < 1 || asid > fw.profile.maxSevAsid) return fail(SEV_RET.INVALID_ASID);
  if (fw.asids.isOwned(asid)) return fail(SEV_RET.ASID_OWNED);
  if (g.activation !== 'none') return fail(SEV_RET.ACTIVE);
  if (g.state === GSTATE.SENT) return fail(SEV_RET.INVALID_GUEST_STATE);
  if (fw.asids.state(asid) === 'dirty') return fail(SEV_RET.DFFLUSH_REQUIRED);
  if (!asidFitsGuest(fw, g, asid)) return fail(SEV_RET.INVALID_ASID);
  g.asid = asid;
  if (g.state === GSTATE.RUNNING || g.state === GSTATE.SUPDATE) {
    g.activation = 'active';
    fw.asids.set(asid, 'inUse');
  } else {
    g.activation = 'pending';
    fw.asids.set(asid, 'allocated');
  }
  return OK;
}

/** LAUNCH_FINISH / RECEIVE_FINISH: a pending activation completes, its ASID becomes in use. */
export function completePendingActivation(fw: FirmwareCore, g: GuestContext): void {
  if (g.activation !== 'pending') return;
  g.activation = 'active';
  fw.asids.set(g.asid, 'inUse');
}

/**
 * DEACTIVATE (0x22): WORKING; handle; not activated ⇒ INACTIVE. An ASID that never ran goes back
 * to clean; one that ran becomes dirty (DF_FLUSH before reuse) and needs a WBINVD.
 */
export function deactivate(fw: FirmwareCore, handle: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.activation === 'none') return fail(SEV_RET.INACTIVE);
  if (fw.asids.state(g.asid) === 'inUse') {
    fw.asids.set(g.asid, 'dirty');
    fw.wbinvdDone = false;
  } else {
    fw.asids.set(g.asid, 'clean');
  }
  g.asid = 0;
  g.activation = 'none';
  return OK;
}

/** GUEST_STATUS (0x23): INIT or WORKING; an unknown handle answers SUCCESS with state 0. */
export function guestStatus(fw: FirmwareCore, handle: number): GuestStatusOut {
  if (fw.pstate !== PSTATE.INIT && fw.pstate !== PSTATE.WORKING)
    return { status: SEV_RET.INVALID_PLATFORM_STATE, policy: 0, asid: 0, state: 0 };
  const g = fw.guest(handle);
  if (!g) return { status: SEV_RET.SUCCESS, policy: 0, asid: 0, state: GSTATE.UNINIT };
  return { status: SEV_RET.SUCCESS, policy: g.policy, asid: g.asid, state: g.state };
}

/** Guest has the NODBG policy bit. */
export function noDebug(g: GuestContext): boolean {
  return (g.policy & SEV_POLICY.NODBG) !== 0;
}

/**
 * The life cycle of an SEV VM, as data: every (state, event) cell is a transition or an error that
 * names both. It is the SEV counterpart of the POWER secure-VM table (Ram Pai, "KVM: PPC: Book3S HV:
 * track the state GFNs associated with secure VMs", v4, LKML July 2020; kept in
 * arch/powerpc/kvm/book3s_hv_uvmem.c): Normal ↔ `normal`, Transient ↔ `launching` / `receiving`,
 * Secure ↔ `running`; H_SVM_INIT_START ↔ LAUNCH_START / RECEIVE_START, H_SVM_INIT_DONE ↔
 * LAUNCH_FINISH / RECEIVE_FINISH, H_SVM_INIT_ABORT ↔ DECOMMISSION of a failed launch (and
 * SEND_CANCEL of a send), UV_SVM_TERMINATE ↔ destruction (TERMINATE) and guest reboot (RESET).
 * `sending` (SEND_START..SEND_FINISH, the firmware's SUPDATE) and `sent` (SENT: the guest must never
 * run again, AMD SEV API spec pub. 55766, SEND_FINISH) have no POWER counterpart.
 */
import type { PageOp } from './page-state-table.js';

export type VmState = 'normal' | 'launching' | 'receiving' | 'running' | 'sending' | 'sent';
export const VM_STATES: readonly VmState[] = Object.freeze(['normal', 'launching', 'receiving', 'running', 'sending', 'sent']);

/**
 * `create` is POWER's "start VM"; the others are the KVM_SEV commands of the same name, except
 * TERMINATE (the VM is destroyed: DEACTIVATE + DECOMMISSION) and RESET (the guest reboots).
 */
export type VmEvent =
  | 'create'
  | 'LAUNCH_START'
  | 'LAUNCH_FINISH'
  | 'RECEIVE_START'
  | 'RECEIVE_FINISH'
  | 'DECOMMISSION'
  | 'SEND_START'
  | 'SEND_FINISH'
  | 'SEND_CANCEL'
  | 'TERMINATE'
  | 'RESET';
export const VM_EVENTS: readonly VmEvent[] = Object.freeze([
  'create',
  'LAUNCH_START',
  'LAUNCH_FINISH',
  'RECEIVE_START',
  'RECEIVE_FINISH',
  'DECOMMISSION',
  'SEND_START',
  'SEND_FINISH',
  'SEND_CANCEL',
  'TERMINATE',
  'RESET',
]);

/** A cell: the next state and what happens to every page (the page table's operation), or an error. */
export type VmCell = { readonly to: VmState; readonly pages?: PageOp } | { readonly error: string };

const err = (why: string): VmCell => ({ error: why });
const to = (s: VmState, pages?: PageOp): VmCell => (pages ? { to: s, pages } : { to: s });
/** UV_SVM_TERMINATE's counterpart: every page back to normal, its contents undefined. */
const terminate = to('normal', 'terminate');
const NOT_LAUNCHED = 'the VM has no SEV context (no LAUNCH_START or RECEIVE_START)';
const NOT_RUNNABLE = 'the guest is being launched or received and does not run yet';
const SENT = 'the guest was sent to another host and must never run again (only TERMINATE is allowed)';

export const VM_STATE_TABLE: Readonly<Record<VmState, Readonly<Record<VmEvent, VmCell>>>> = Object.freeze({
  normal: {
    create: to('normal'),
    LAUNCH_START: to('launching'),
    RECEIVE_START: to('receiving'),
    LAUNCH_FINISH: err(NOT_LAUNCHED),
    RECEIVE_FINISH: err(NOT_LAUNCHED),
    DECOMMISSION: err(NOT_LAUNCHED),
    SEND_START: err(NOT_LAUNCHED),
    SEND_FINISH: err(NOT_LAUNCHED),
    SEND_CANCEL: err(NOT_LAUNCHED),
    TERMINATE: terminate,
    RESET: terminate,
  },
  launching: {
    create: err('the VM exists already (POWER: N/A)'),
    LAUNCH_START: err('a launch is already under way'),
    RECEIVE_START: err('a launch is under way'),
    LAUNCH_FINISH: to('running', 'init-done'),
    RECEIVE_FINISH: err('the VM is being launched, not received'),
    DECOMMISSION: terminate,
    SEND_START: err(NOT_RUNNABLE),
    SEND_FINISH: err('no send is under way'),
    SEND_CANCEL: err('no send is under way'),
    TERMINATE: terminate,
    RESET: terminate,
  },
  receiving: {
    create: err('the VM exists already (POWER: N/A)'),
    LAUNCH_START: err('the VM is being received'),
    RECEIVE_START: err('a receive is already under way'),
    LAUNCH_FINISH: err('the VM is being received, not launched'),
    RECEIVE_FINISH: to('running', 'init-done'),
    DECOMMISSION: terminate,
    SEND_START: err(NOT_RUNNABLE),
    SEND_FINISH: err('no send is under way'),
    SEND_CANCEL: err('no send is under way'),
    TERMINATE: terminate,
    RESET: terminate,
  },
  running: {
    create: err('the VM exists already'),
    LAUNCH_START: err('the guest is already launched'),
    RECEIVE_START: err('the guest is already running'),
    LAUNCH_FINISH: err('the guest is already launched'),
    RECEIVE_FINISH: err('the guest is already running'),
    DECOMMISSION: err('the launch finished: only TERMINATE ends a running guest'),
    SEND_START: to('sending'),
    SEND_FINISH: err('no send is under way'),
    SEND_CANCEL: err('no send is under way'),
    TERMINATE: terminate,
    RESET: terminate,
  },
  sending: {
    create: err('the VM exists already'),
    LAUNCH_START: err('the guest is being sent'),
    RECEIVE_START: err('the guest is being sent'),
    LAUNCH_FINISH: err('the guest is being sent'),
    RECEIVE_FINISH: err('the guest is being sent'),
    DECOMMISSION: err('the guest is being sent: SEND_CANCEL first'),
    SEND_START: err('a send is already under way'),
    SEND_FINISH: to('sent'),
    SEND_CANCEL: to('running'),
    TERMINATE: terminate,
    RESET: terminate,
  },
  sent: {
    create: err(SENT),
    LAUNCH_START: err(SENT),
    RECEIVE_START: err(SENT),
    LAUNCH_FINISH: err(SENT),
    RECEIVE_FINISH: err(SENT),
    DECOMMISSION: err(SENT),
    SEND_START: err(SENT),
    SEND_FINISH: err(SENT),
    SEND_CANCEL: err('SEND_FINISH already made the guest unrunnable; it cannot be cancelled'),
    TERMINATE: terminate,
    RESET: err(SENT),
  },
});

/** Whether the guest may execute in a state (POWER: "The VM never executes in this state"). */
export const VM_GUEST_RUNS: Readonly<Record<VmState, boolean>> = Object.freeze({
  normal: true,
  launching: false,
  receiving: false,
  running: true,
  sending: true, // live migration: the guest runs while its pages are sent
  sent: false,
});

/** Whether guest RAM is SEV memory whose pages the guest reports (KVM_HC_MAP_GPA_RANGE is served). */
export const VM_TRACKS_PAGES: Readonly<Record<VmState, boolean>> = Object.freeze({
  normal: false,
  launching: false,
  receiving: false,
  running: true,
  sending: true,
  sent: false,
});

/** The cell for (state, event), with the error spelled out as a sentence naming both. */
export function vmTransition(state: VmState, event: VmEvent): { to: VmState; pages?: PageOp } | { error: string } {
  const cell = VM_STATE_TABLE[state][event];
  if ('error' in cell) return { error: `${event} is not allowed in VM state '${state}': ${cell.error}` };
  return cell;
}

/**
 * The life cycle of a guest page, as data: the SEV counterpart of the POWER secure-VM GFN table (Ram
 * Pai, "track the state GFNs associated with secure VMs", LKML July 2020; arch/powerpc/kvm/
 * book3s_hv_uvmem.c). Secure ↔ `private`, Shared ↔ `shared`, Normal ↔ `normal`. The operations:
 * - `share` / `unshare`: the guest's KVM_HC_MAP_GPA_RANGE with attrs bit 4 clear / set, once the
 *   hypercall completes (Documentation/virt/kvm/x86/hypercalls.rst);
 * - `terminate`: DECOMMISSION of a failed launch, destruction, guest reboot (POWER: SVM abort/terminate);
 * - `init-done`: LAUNCH_FINISH / RECEIVE_FINISH (H_SVM_INIT_DONE): RAM nobody reported is private;
 * - `launch-update`: LAUNCH_UPDATE_DATA / RECEIVE_UPDATE_DATA encrypted the page with the guest's key;
 * - `convert`: the hypercall exit was seen but the guest has not been re-entered with its answer
 *   (arch/x86/kvm/x86.c: complete_hypercall_exit() runs on the next KVM_RUN); the page settles with
 *   `share` or `unshare` then.
 */
import type { PageState } from './page-state-view.js';

export type PageOp = 'share' | 'unshare' | 'terminate' | 'init-done' | 'launch-update' | 'convert';
export const PAGE_OPS: readonly PageOp[] = Object.freeze(['share', 'unshare', 'terminate', 'init-done', 'launch-update', 'convert']);
export const PAGE_STATES: readonly PageState[] = Object.freeze(['normal', 'private', 'shared', 'converting']);

export const PAGE_STATE_TABLE: Readonly<Record<PageState, Readonly<Record<PageOp, PageState>>>> = Object.freeze({
  private: {
    share: 'shared',
    unshare: 'private',
    terminate: 'normal',
    'init-done': 'private',
    'launch-update': 'private',
    convert: 'converting',
  },
  shared: {
    share: 'shared',
    unshare: 'private',
    terminate: 'normal',
    'init-done': 'shared',
    'launch-update': 'private',
    convert: 'converting',
  },
  normal: {
    share: 'shared',
    unshare: 'private',
    terminate: 'normal',
    'init-done': 'private',
    'launch-update': 'private',
    convert: 'converting',
  },
  // The hypercall has not completed: LAUNCH_FINISH leaves it to settle with its hypercall.
  converting: {
    share: 'shared',
    unshare: 'private',
    terminate: 'normal',
    'init-done': 'converting',
    'launch-update': 'private',
    convert: 'converting',
  },
});

/**
 * What the rest of kvm-sev may ask about an SEV guest's pages: which are private (encrypted with the
 * guest's key, so only the firmware may export them: SEND_UPDATE_DATA) and which are shared (plaintext
 * the host may copy). The tracker that keeps this (fed by the guest's KVM_HC_MAP_GPA_RANGE hypercall,
 * the launch commands and the migration-control MSR) implements it; host-to-host migration reads it.
 *
 * Page states follow the guest's view, as in the kernel's `kvm_sev_hc_page_enc_status` proposals and
 * the x86 `KVM_HC_MAP_GPA_RANGE` ABI (Documentation/virt/kvm/x86/hypercalls.rst):
 * - `normal`: a non-SEV VM's page, or an SEV page before launch (the host wrote it in plaintext).
 * - `private`: encrypted with the guest's key (launch data, or RAM after LAUNCH_FINISH by default).
 * - `shared`: the guest cleared the C-bit and said so with the hypercall.
 * - `converting`: the guest changed its page tables but the hypercall has not completed yet; a migration
 *   treats it as dirty and sends it again once it settles.
 */
export type PageState = 'normal' | 'private' | 'shared' | 'converting';

/** A run of pages in one state: [gpa, gpa + pages * 4096). */
export interface PageStateRun {
  readonly gpa: bigint;
  readonly pages: number;
  readonly state: PageState;
}

/** One change of state, as events report it. `generation` is the guest boot it belongs to. */
export interface PageStateChange {
  readonly gpa: bigint;
  readonly pages: number;
  readonly from: PageState | 'mixed';
  readonly to: PageState;
  readonly generation: number;
  /** What caused it: the guest's hypercall, a launch or receive command, LAUNCH_FINISH's default, a reset. */
  readonly cause: 'hypercall' | 'launch' | 'receive' | 'launch-finish' | 'reset' | 'restore';
}

/** The read side of the page-state tracker. */
export interface PageStateView {
  /** The state of the page that holds `gpa`; addresses outside guest RAM throw a RangeError. */
  pageState(gpa: bigint): PageState;
  /** Maximal runs of pages in one state over all of guest RAM, in address order. */
  runs(): Iterable<PageStateRun>;
  /** Whether the guest said it may be migrated (MSR_KVM_MIGRATION_CONTROL bit 0, KVM_MIGRATION_READY). */
  readonly migrationReady: boolean;
  /** The guest's boot generation (advanced when it clears the migration-control MSR and sets it again). */
  readonly generation: number;
  /** Called on every change; returns a function that unsubscribes. */
  onChange(listener: (change: PageStateChange) => void): () => void;
}

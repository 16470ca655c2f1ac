/**
 * The SEV layer: thin typed calls for every KVM_SEV_* command of a VM ({@link SevGuestCommands}) and
 * every /dev/sev platform command ({@link SevPlatform}), with failures enriched into KvmErrors that
 * carry the SEV command, the firmware status and a hint.
 */
export {
  SevGuestCommands,
  type SevGuestCommandsOptions,
  type Init2Options,
  type LaunchStartOptions,
  type SevPacketOptions,
  type LaunchMeasurement,
  type SevGuestStatus,
  type SendStartOptions,
  type ReceiveStartOptions,
} from './kvm-sev-commands.js';
export { SevPlatform, type SevPlatformStatus, type SevPlatformOpenOptions, type SnpPlatformStatus } from './platform.js';
export { enrichSevError, firmwareStatus, sevHint, sevCommandDisplayName, type SevFailure } from './sev-error.js';
export {
  SevLaunch,
  InitializedGuest,
  LaunchingGuest,
  MeasuredGuest,
  RunningGuest,
  type SevInitOptions,
  type ProgressOptions,
} from './launch.js';
export {
  probeCapabilities,
  checkRequirement,
  REQUIREMENTS,
  type CapabilityLine,
  type CapabilityReport,
  type CapabilityStatus,
  type ProbeOptions,
  type SystemOnlyTarget,
  type Requirement,
  type KvmKind,
  type KvmFlavour,
  type HostCpu,
} from './capabilities.js';
export type { PageState, PageStateRun, PageStateChange, PageStateView } from './page-states/page-state-view.js';
export {
  PageStateTracker,
  PAGE_STATE_SNAPSHOT_VERSION,
  type PageStateTrackerOptions,
  type PageStateLogEntry,
  type PageStateSnapshot,
} from './page-states/page-state-tracker.js';
export { PageStateExits, withPageStateCpuid } from './page-states/page-state-exits.js';
export { handleMapGpaRange, decodeMapGpaRangeAttrs, type MapGpaRangeAttrs } from './page-states/map-gpa-range.js';
export { handleMigrationControlMsr } from './page-states/migration-control-msr.js';
export {
  VM_STATE_TABLE,
  VM_STATES,
  VM_EVENTS,
  vmTransition,
  type VmState,
  type VmEvent,
  type VmCell,
} from './page-states/vm-state-table.js';
export { PAGE_STATE_TABLE, PAGE_OPS, PAGE_STATES, type PageOp } from './page-states/page-state-table.js';

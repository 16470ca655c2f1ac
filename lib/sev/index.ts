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

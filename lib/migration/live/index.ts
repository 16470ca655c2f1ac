/** Host-to-host live migration of a running SEV guest (docs/migration-stream.md). */
export {
  migrate,
  type LiveGuest,
  type MigrateOptions,
  type MigrationPhase,
  type MigrationProgress,
  type MigrationResult,
} from './source.js';
export { receive, type ReceiveOptions, type ReceiveProgress, type ReceivedGuest } from './target.js';
export { VcpuLoop, type ExitHandler } from './vcpu-loop.js';
export { amdCertsBytes, checkTarget, type TargetPlatform } from './target-check.js';
export { STREAM_VERSION, RECORD, RecordParser } from './stream.js';
export type { ConnectTo, ListenOn } from './endpoint.js';

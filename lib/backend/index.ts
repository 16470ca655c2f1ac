export type * from './contract.js';
export type * from './system-view.js';
export { KvmError, KvmSevError, errnoError, type SevErrorInfo } from './errors.js';

export type * from './contract.js';
export { KvmError, KvmSevError, errnoError, type SevErrorInfo } from './errors.js';
export { NativeBackend } from './native/native-backend.js';
export { loadAddon, addonAvailable, NativeUnavailableError, packageRoot } from './native/addon.js';

/**
 * The errors a backend raises for a failed syscall, shaped like Node's own system errors
 * (`code`, negative `errno`, `syscall`, `path`), plus the ioctl `request` name. The SEV layer
 * adds the SEV command, the firmware status and a hint ({@link KvmError.sev}).
 */
import { errnoMessage, errnoName } from '../uapi/errno.js';

export interface SevErrorInfo {
  /** KVM_SEV_* or SEV_* command name ('LAUNCH_START', 'PDH_CERT_EXPORT'). */
  command: string;
  /** Firmware status written back in `error` (SEV_RET_*); -1 means the firmware was never called. */
  fwError: number;
  /** Its name ('INVALID_GUEST_STATE'). */
  fwErrorName: string;
}

export class KvmError extends Error {
  /** 'ENOTTY' */
  readonly code: string;
  /** Negative, as in Node's system errors: -25 for ENOTTY. */
  readonly errno: number;
  readonly syscall: string;
  /** The ioctl request ('KVM_MEMORY_ENCRYPT_OP'), when the syscall was an ioctl. */
  declare request?: string;
  declare path?: string;
  /** Set for SEV commands. */
  declare sev?: SevErrorInfo;
  /** What to do about it, when we know. */
  declare hint?: string;

  constructor(errno: number, syscall: string, request?: string, path?: string, detail?: string) {
    const n = Math.abs(errno);
    const code = errnoName(n);
    let msg = `${code}: ${errnoMessage(n)}, ${syscall}`;
    if (request) msg += ` ${request}`;
    if (path) msg += ` '${path}'`;
    if (detail) msg += ` (${detail})`;
    super(msg);
    this.name = 'KvmError';
    this.code = code;
    this.errno = -n;
    this.syscall = syscall;
    if (request !== undefined) this.request = request;
    if (path !== undefined) this.path = path;
  }
}

/** Build the error a Linux syscall failure gives (errno positive or negative). */
export function errnoError(errno: number, syscall: string, request?: string, path?: string, detail?: string): KvmError {
  return new KvmError(errno, syscall, request, path, detail);
}

/**
 * Says what the errno alone does not: `detail` goes into the message (and the stack's first line)
 * in parentheses, `hint` into `hint`. For a KvmError the backend raised; anything else is returned
 * untouched.
 */
export function explainKvmError<E>(err: E, detail: string, hint?: string): E {
  if (!(err instanceof KvmError)) return err;
  const stack = err.stack; // V8 formats the stack on first read, from the message of that moment
  const old = err.message;
  err.message = `${old} (${detail})`;
  if (typeof stack === 'string' && stack.includes(old)) err.stack = stack.replace(old, err.message);
  if (hint !== undefined) err.hint = hint;
  return err;
}

/** Errors of our own making, with a stable `code` ('ERR_KVM_SEV_…'). */
export class KvmSevError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'KvmSevError';
    this.code = code;
  }
}

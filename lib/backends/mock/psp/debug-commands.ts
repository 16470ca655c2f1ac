/**
 * DBG_DECRYPT / DBG_ENCRYPT (SEV API spec ch. 7; docs/sev-reference.md §8; order from AMD-ASPFW): WORKING; source or
 * destination not 16-aligned ⇒ INVALID_ADDRESS; length not a 16 multiple ⇒ INVALID_LEN; handle ⇒
 * INVALID_GUEST; NODBG ⇒ POLICY_FAILURE; not activated ⇒ INACTIVE. No guest-state check. The
 * length is `src.bytes.length` (`dst` must be as long: the kernel passes one length for both).
 */
import { PSTATE } from '../../../uapi/constants.js';
import { invalidArgValue } from '../../../uapi/errors.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, PhysRange } from './api.js';
import { FirmwareCore, OK, fail } from './firmware-core.js';
import { noDebug } from './guest-management-commands.js';
import { checkPhysRange, isAligned16 } from './phys-range.js';

export function debugCrypt(fw: FirmwareCore, handle: number, srcIn: PhysRange, dstIn: PhysRange, encrypt: boolean): FwResult {
  const src = checkPhysRange('src', srcIn);
  const dst = checkPhysRange('dst', dstIn);
  if (dst.bytes.length !== src.bytes.length)
    throw invalidArgValue('dst.bytes.length', dst.bytes.length, `must equal src.bytes.length (${src.bytes.length})`);
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  if (!isAligned16(src) || !isAligned16(dst)) return fail(SEV_RET.INVALID_ADDRESS);
  if (src.bytes.length % 16 !== 0) return fail(SEV_RET.INVALID_LEN);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (noDebug(g)) return fail(SEV_RET.POLICY_FAILURE);
  if (g.activation === 'none') return fail(SEV_RET.INACTIVE);
  if (src.bytes.length === 0) return OK;
  if (encrypt) {
    fw.memory.writePrivate(dst, g.vek, Buffer.from(src.bytes));
  } else {
    fw.writeShared(dst, fw.memory.readPrivate(src, g.vek));
  }
  return OK;
}

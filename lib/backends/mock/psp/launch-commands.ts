/**
 * Launch commands (SEV API spec ch. 6; docs/sev-reference.md §3–§5, check order from AMD-ASPFW): LAUNCH_START (and the guest
 * creation RECEIVE_START shares), LAUNCH_UPDATE_DATA / _VMSA, LAUNCH_MEASURE, LAUNCH_SECRET,
 * LAUNCH_FINISH, ATTESTATION.
 */
import {
  ATTESTATION_REPORT_SIZE,
  LAUNCH_MEASURE_SIZE,
  LaunchDigest,
  MAX_PACKET_LENGTH,
  PACKET_FLAG_COMPRESSED,
  PACKET_HEADER_SIZE,
  SEV_CERT_SIZE,
  SESSION_SIZE,
  SevCertError,
  SevMacError,
  computeLaunchMeasurement,
  openLaunchSession,
  openSecret,
  parsePacketHeader,
  policyAllowsApi,
  serializeAttestationReport,
  signAttestationReport,
} from '../../../crypto/index.js';
import { GSTATE, PSTATE, SEV_POLICY, SEV_POLICY_RESERVED_MASK } from '../../../uapi/constants.js';
import { invalidArgValue } from '../../../uapi/errors.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, PhysRange, SizedOut } from './api.js';
import { FirmwareCore, OK, certStatus, fail } from './firmware-core.js';
import { completePendingActivation } from './guest-management-commands.js';
import { GuestContext } from './guest-context.js';
import { checkPhysRange, isAligned16 } from './phys-range.js';
import { apiAtLeast } from './processor-profiles.js';

/** One VMSA page. */
export const VMSA_SIZE = 4096;

export interface StartArgs {
  handle: number;
  policy: number;
  /** The guest owner's DH certificate (RECEIVE_START: the sender's PDH); null = no channel. */
  dhCert: Uint8Array | null;
  session: Uint8Array | null;
  /** LUPDATE for LAUNCH_START, RUPDATE for RECEIVE_START. */
  state: number;
}

/**
 * LAUNCH_START / RECEIVE_START (§3.4): INIT or WORKING; with a channel: session length 128 and
 * certificate length 0x824 (INVALID_LEN), GODH check (INVALID_CERTIFICATE), WRAP_MAC and
 * POLICY_MAC (BAD_MEASUREMENT), policy API minimum and reserved bits (POLICY_FAILURE); then the
 * VEK (fresh, or shared with `handle`: INVALID_GUEST / POLICY_FAILURE), a free handle
 * (RESOURCE_LIMIT), ES policy on a platform not INIT'd with ES (UNSUPPORTED). Without a channel
 * TEK and TIK are zero and the policy is not checked (AMD-ASPFW checks it with the MAC only).
 */
export function startGuest(fw: FirmwareCore, a: StartArgs): FwResult & { handle: number } {
  const no = (status: number): FwResult & { handle: number } => ({ status, handle: a.handle });
  if (fw.pstate !== PSTATE.INIT && fw.pstate !== PSTATE.WORKING) return no(SEV_RET.INVALID_PLATFORM_STATE);
  const policy = a.policy >>> 0;
  let tek: Buffer = Buffer.alloc(16);
  let tik: Buffer = Buffer.alloc(16);
  if (a.dhCert !== null) {
    if (a.session === null || a.session.length !== SESSION_SIZE) return no(SEV_RET.INVALID_LEN);
    if (a.dhCert.length !== SEV_CERT_SIZE) return no(SEV_RET.INVALID_LEN);
    try {
      const keys = openLaunchSession({ session: a.session, godhCert: a.dhCert, pdhPrivateKey: fw.identity.pdhKey!, policy });
      tek = Buffer.from(keys.tek);
      tik = Buffer.from(keys.tik);
    } catch (e) {
      if (e instanceof SevCertError) return no(certStatus(e));
      if (e instanceof SevMacError) return no(SEV_RET.BAD_MEASUREMENT);
      throw e;
    }
    if (!policyAllowsApi(policy, fw.profile.apiMajor, fw.profile.apiMinor)) return no(SEV_RET.POLICY_FAILURE);
    if ((policy & SEV_POLICY_RESERVED_MASK) !== 0) return no(SEV_RET.POLICY_FAILURE);
  }
  let vek: Buffer;
  if (a.handle === 0) {
    vek = fw.random(16);
  } else {
    const other = fw.guest(a.handle);
    if (!other) return no(SEV_RET.INVALID_GUEST);
    if (other.policy !== policy || (other.policy & SEV_POLICY.NOKS) !== 0) return no(SEV_RET.POLICY_FAILURE);
    vek = Buffer.from(other.vek);
  }
  const handle = fw.guests.freeHandle();
  if (handle === 0) return no(SEV_RET.RESOURCE_LIMIT);
  const es = (policy & SEV_POLICY.ES) !== 0;
  if (es && !fw.esInit) return no(SEV_RET.UNSUPPORTED);
  const digest = a.state === GSTATE.LUPDATE ? new LaunchDigest() : null;
  fw.guests.add(new GuestContext({ handle, policy, state: a.state, vek, es, tek, tik, digest }));
  fw.pstate = PSTATE.WORKING;
  return { status: SEV_RET.SUCCESS, handle };
}

/**
 * LAUNCH_UPDATE_DATA / _VMSA (§4.2): [VMSA: length ≠ 4096 ⇒ INVALID_LEN, checked first as
 * AMD-ASPFW does]; WORKING; handle; LUPDATE; VMSA on a non-ES guest ⇒ UNSUPPORTED; not activated
 * ⇒ INACTIVE; address not 16-aligned ⇒ INVALID_ADDRESS; length 0 or not a 16 multiple ⇒
 * INVALID_LEN. Then the plaintext extends GCTX.LD and is encrypted in place (one hash pass, one
 * cipher pass; the VMSA page is measured unmodified — the mock does no SEV-ES VMSA fix-ups); inside a
 * batch, LAUNCH_UPDATE_DATA queues that work (launch-batch.ts).
 */
export function launchUpdate(fw: FirmwareCore, handle: number, rangeIn: PhysRange, vmsa: boolean): FwResult {
  const range = checkPhysRange('range', rangeIn);
  const len = range.bytes.length;
  if (vmsa && len !== VMSA_SIZE) return fail(SEV_RET.INVALID_LEN);
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.LUPDATE) return fail(SEV_RET.INVALID_GUEST_STATE);
  if (vmsa && !g.es) return fail(SEV_RET.UNSUPPORTED);
  if (g.activation === 'none') return fail(SEV_RET.INACTIVE);
  if (!isAligned16(range)) return fail(SEV_RET.INVALID_ADDRESS);
  if (len === 0 || len % 16 !== 0) return fail(SEV_RET.INVALID_LEN);
  if (!vmsa && fw.launchQueue) {
    fw.launchQueue.add(g, range);
    return OK;
  }
  g.digest!.update(range.bytes);
  fw.memory.writePrivate(range, g.vek, range.bytes);
  return OK;
}

/**
 * LAUNCH_MEASURE (§4.3): WORKING; handle; LUPDATE; capacity < 48 ⇒ INVALID_LEN with 48. MEASURE =
 * HMAC(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖ LD ‖ MNONCE) with the firmware's
 * version and a fresh MNONCE; output MEASURE ‖ MNONCE; GSTATE → LSECRET.
 */
export function launchMeasure(fw: FirmwareCore, handle: number, capacity: number): SizedOut {
  if (fw.pstate !== PSTATE.WORKING) return { status: SEV_RET.INVALID_PLATFORM_STATE, length: capacity };
  const g = fw.guest(handle);
  if (!g) return { status: SEV_RET.INVALID_GUEST, length: capacity };
  if (g.state !== GSTATE.LUPDATE) return { status: SEV_RET.INVALID_GUEST_STATE, length: capacity };
  if (capacity < LAUNCH_MEASURE_SIZE) return { status: SEV_RET.INVALID_LEN, length: LAUNCH_MEASURE_SIZE };
  const ld = g.digest!.digest();
  const mnonce = fw.random(16);
  const { apiMajor, apiMinor, build } = fw.profile;
  const measure = computeLaunchMeasurement({ apiMajor, apiMinor, build, policy: g.policy, digest: ld, mnonce, tik: g.tik! });
  g.measure = measure;
  g.launchDigest = ld;
  g.state = GSTATE.LSECRET;
  return { status: SEV_RET.SUCCESS, length: LAUNCH_MEASURE_SIZE, data: Buffer.concat([measure, mnonce]) };
}

/**
 * LAUNCH_SECRET (§5), in order: WORKING; handle; guest address not 16-aligned ⇒ INVALID_ADDRESS;
 * header ≠ 52 bytes, guest length 0 / not a 16 multiple / > 0x5000, or ≠ trans length ⇒
 * INVALID_LEN; GSTATE ≠ LSECRET ⇒ INVALID_GUEST_STATE; not activated ⇒ INACTIVE; MAC ⇒
 * BAD_MEASUREMENT; COMPRESSED ⇒ UNSUPPORTED. The secret is then written as private guest memory.
 */
export function launchSecret(
  fw: FirmwareCore,
  handle: number,
  args: { header: Uint8Array; guest: PhysRange; trans: Uint8Array },
): FwResult {
  const guest = checkPhysRange('args.guest', args.guest);
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (!isAligned16(guest)) return fail(SEV_RET.INVALID_ADDRESS);
  const glen = guest.bytes.length;
  if (
    args.header.length !== PACKET_HEADER_SIZE ||
    glen === 0 ||
    glen % 16 !== 0 ||
    glen > MAX_PACKET_LENGTH ||
    glen !== args.trans.length
  ) {
    return fail(SEV_RET.INVALID_LEN);
  }
  if (g.state !== GSTATE.LSECRET) return fail(SEV_RET.INVALID_GUEST_STATE);
  if (g.activation === 'none') return fail(SEV_RET.INACTIVE);
  let plain: Buffer;
  try {
    plain = openSecret({ tek: g.tek!, tik: g.tik!, measurement: g.measure!, header: args.header, trans: args.trans, guestLength: glen });
  } catch (e) {
    if (e instanceof SevMacError) return fail(SEV_RET.BAD_MEASUREMENT);
    throw e;
  }
  if ((parsePacketHeader(args.header).flags & PACKET_FLAG_COMPRESSED) !== 0) return fail(SEV_RET.UNSUPPORTED);
  fw.memory.writePrivate(guest, g.vek, plain);
  plain.fill(0);
  return OK;
}

/** LAUNCH_FINISH (§4.4): WORKING; handle; LSECRET → RUNNING; completes a pending activation; wipes TEK, TIK and the LD context. */
export function launchFinish(fw: FirmwareCore, handle: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.LSECRET) return fail(SEV_RET.INVALID_GUEST_STATE);
  completePendingActivation(fw, g);
  g.closeChannel();
  g.digest = null;
  g.state = GSTATE.RUNNING;
  return OK;
}

const ATTESTABLE: readonly number[] = [GSTATE.LSECRET, GSTATE.RUNNING, GSTATE.SUPDATE, GSTATE.SENT];

/**
 * ATTESTATION (0x36, API ≥ 0.23, else INVALID_COMMAND; §4.5): WORKING; handle; GSTATE LSECRET,
 * RUNNING, SUPDATE or SENT; capacity < 0xD0 ⇒ INVALID_LEN with 0xD0. The report (mnonce, launch
 * digest, policy) is signed by the PEK.
 */
export function attestation(fw: FirmwareCore, handle: number, mnonce: Uint8Array, capacity: number): SizedOut {
  if (!apiAtLeast(fw.profile, 0, 23)) return { status: SEV_RET.INVALID_COMMAND, length: capacity };
  if (!(mnonce instanceof Uint8Array) || mnonce.length !== 16) throw invalidArgValue('mnonce', mnonce, 'must be 16 bytes');
  if (fw.pstate !== PSTATE.WORKING) return { status: SEV_RET.INVALID_PLATFORM_STATE, length: capacity };
  const g = fw.guest(handle);
  if (!g) return { status: SEV_RET.INVALID_GUEST, length: capacity };
  if (!ATTESTABLE.includes(g.state)) return { status: SEV_RET.INVALID_GUEST_STATE, length: capacity };
  if (capacity < ATTESTATION_REPORT_SIZE) return { status: SEV_RET.INVALID_LEN, length: ATTESTATION_REPORT_SIZE };
  // A received guest has no launch digest: the report carries zeros, as the zeroed field would.
  const report = signAttestationReport({ mnonce, launchDigest: g.launchDigest ?? Buffer.alloc(32), policy: g.policy }, fw.identity.pekKey!);
  return { status: SEV_RET.SUCCESS, length: ATTESTATION_REPORT_SIZE, data: serializeAttestationReport(report) };
}

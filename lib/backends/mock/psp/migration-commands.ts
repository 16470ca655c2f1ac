/**
 * Migration (SEV API spec ch. 6; docs/sev-reference.md §6; check order from AMD-ASPFW): SEND_START (the firmware acts as the
 * guest owner toward the receiver's PDH), SEND_UPDATE_DATA/_VMSA, SEND_FINISH, SEND_CANCEL,
 * RECEIVE_START, RECEIVE_UPDATE_DATA/_VMSA, RECEIVE_FINISH.
 */
import {
  ChannelContext,
  MAX_PACKET_LENGTH,
  PACKET_FLAG_COMPRESSED,
  PACKET_HEADER_SIZE,
  SEV_CERT_SIZE,
  SESSION_SIZE,
  SevMacError,
  checkGodhCert,
  ecdhP384,
  openTransportPacket,
  parsePacketHeader,
  parseSevCert,
  policyAllowsApi,
  sealTransportPacket,
  serializeSession,
  serializeSevCert,
  sevCertPublicKey,
  splitAmdCerts,
  verifyCekChain,
  verifyOcaChain,
  wrapSession,
} from '../../../crypto/index.js';
import type { AmdCertificate, SevCertificate } from '../../../crypto/index.js';
import { GSTATE, PSTATE, SEV_POLICY } from '../../../uapi/constants.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, PhysRange } from './api.js';
import { FirmwareCore, OK, certStatus, fail, isCertError } from './firmware-core.js';
import { completePendingActivation } from './guest-management-commands.js';
import { startGuest } from './launch-commands.js';
import { checkPhysRange, isAligned16 } from './phys-range.js';

/** AMD certificate sizes: RSA-2048 (Naples) and RSA-4096 (Rome and later) (§7.2). */
const AMD_CERT_SIZES = [0x340, 0x640];

function amdChainLengthValid(len: number): boolean {
  return AMD_CERT_SIZES.some((a) => AMD_CERT_SIZES.some((b) => a + b === len));
}

export interface SendStartArgs {
  pdhCert: Uint8Array;
  platCerts: Uint8Array;
  amdCerts: Uint8Array;
  sessionCapacity: number;
}

export type SendStartOut = FwResult & { policy: number; sessionLength: number; session?: Uint8Array };

/**
 * SEND_START (§6), in AMD-ASPFW's order: WORKING; handle; session length ≠ 128 ⇒ INVALID_LEN with
 * 128; GSTATE RUNNING; NOSEND ⇒ POLICY_FAILURE; SEV bit ⇒ lengths (INVALID_LEN), ARK (must be this
 * chip's root) → ASK → CEK → PEK → PDH (INVALID_CERTIFICATE / BAD_SIGNATURE), receiver PEK API ≥
 * policy minimum (POLICY_FAILURE); DOMAIN bit ⇒ OCA → PEK → PDH and receiver OCA == ours
 * (POLICY_FAILURE); receiver PDH usable (INVALID_CERTIFICATE). Then random TEK, TIK, NONCE,
 * WRAP_IV, Z = ECDH(our PDH, receiver PDH), the §3 session; GSTATE → SUPDATE.
 */
export function sendStart(fw: FirmwareCore, handle: number, a: SendStartArgs): SendStartOut {
  const no = (status: number, extra: Partial<SendStartOut> = {}): SendStartOut => ({
    status,
    policy: 0,
    sessionLength: a.sessionCapacity,
    ...extra,
  });
  if (fw.pstate !== PSTATE.WORKING) return no(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return no(SEV_RET.INVALID_GUEST);
  if (a.sessionCapacity !== SESSION_SIZE) return no(SEV_RET.INVALID_LEN, { sessionLength: SESSION_SIZE });
  if (g.state !== GSTATE.RUNNING) return no(SEV_RET.INVALID_GUEST_STATE);
  if ((g.policy & SEV_POLICY.NOSEND) !== 0) return no(SEV_RET.POLICY_FAILURE);
  const platCert = (i: number): SevCertificate => parseSevCert(a.platCerts.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE));
  try {
    if ((g.policy & SEV_POLICY.SEV) !== 0) {
      if (a.platCerts.length !== 3 * SEV_CERT_SIZE || a.pdhCert.length !== SEV_CERT_SIZE || !amdChainLengthValid(a.amdCerts.length)) {
        return no(SEV_RET.INVALID_LEN);
      }
      let amd: AmdCertificate[];
      try {
        amd = splitAmdCerts(a.amdCerts);
      } catch {
        return no(SEV_RET.INVALID_CERTIFICATE);
      }
      if (amd.length !== 2) return no(SEV_RET.INVALID_CERTIFICATE);
      const chain = verifyCekChain(
        { ask: amd[0]!, ark: amd[1]!, cek: platCert(2), pek: platCert(0), pdh: parseSevCert(a.pdhCert) },
        { trustedArks: [fw.identity.root.ark] },
      );
      if (!policyAllowsApi(g.policy, chain.pek.apiMajor, chain.pek.apiMinor)) return no(SEV_RET.POLICY_FAILURE);
    }
    if ((g.policy & SEV_POLICY.DOMAIN) !== 0) {
      if (a.platCerts.length !== 3 * SEV_CERT_SIZE || a.pdhCert.length !== SEV_CERT_SIZE) return no(SEV_RET.INVALID_LEN);
      const oca = platCert(1);
      verifyOcaChain({ oca, pek: platCert(0), pdh: parseSevCert(a.pdhCert) });
      if (!serializeSevCert(oca).equals(serializeSevCert(fw.identity.oca!))) return no(SEV_RET.POLICY_FAILURE);
    }
  } catch (e) {
    if (isCertError(e)) return no(certStatus(e));
    throw e;
  }
  if (a.pdhCert.length !== SEV_CERT_SIZE) return no(SEV_RET.INVALID_LEN);
  const receiverPdh = parseSevCert(a.pdhCert);
  if (!checkGodhCert(receiverPdh).ok) return no(SEV_RET.INVALID_CERTIFICATE);
  const z = ecdhP384(fw.identity.pdhKey!, sevCertPublicKey(receiverPdh));
  const tek = fw.random(16);
  const tik = fw.random(16);
  const s = wrapSession({ sharedSecret: z, tek, tik, policy: g.policy, nonce: fw.random(16), wrapIv: fw.random(16) });
  z.fill(0);
  g.tek = tek;
  g.tik = tik;
  g.state = GSTATE.SUPDATE;
  return { status: SEV_RET.SUCCESS, policy: g.policy, sessionLength: SESSION_SIZE, session: serializeSession(s) };
}

export interface SendUpdateArgs {
  guest: PhysRange;
  hdrCapacity: number;
  transCapacity: number;
}

export type SendUpdateOut = FwResult & { hdrLength: number; transLength: number; header?: Uint8Array; trans?: Uint8Array };

/**
 * SEND_UPDATE_DATA / _VMSA (§6), in AMD-ASPFW's order: WORKING; header capacity < 52 ⇒ INVALID_LEN
 * (checked before the handle); handle; SUPDATE; VMSA of a non-ES guest ⇒ UNSUPPORTED; not activated
 * ⇒ INACTIVE; guest length 0 / > 0x5000 / not a 16 multiple, trans capacity 0 or < guest length ⇒
 * INVALID_LEN; guest address not 16-aligned ⇒ INVALID_ADDRESS. Every INVALID_LEN reports the
 * required lengths (52, guest length). The packet: VEK-decrypt, fresh IV, TEK-encrypt, TIK-MAC.
 */
export function sendUpdate(fw: FirmwareCore, handle: number, a: SendUpdateArgs, vmsa: boolean): SendUpdateOut {
  const guest = checkPhysRange('args.guest', a.guest);
  const glen = guest.bytes.length;
  const no = (status: number): SendUpdateOut => ({ status, hdrLength: a.hdrCapacity, transLength: a.transCapacity });
  const short = (): SendUpdateOut => ({ status: SEV_RET.INVALID_LEN, hdrLength: PACKET_HEADER_SIZE, transLength: glen });
  if (fw.pstate !== PSTATE.WORKING) return no(SEV_RET.INVALID_PLATFORM_STATE);
  if (a.hdrCapacity < PACKET_HEADER_SIZE) return short();
  const g = fw.guest(handle);
  if (!g) return no(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.SUPDATE) return no(SEV_RET.INVALID_GUEST_STATE);
  if (vmsa && !g.es) return no(SEV_RET.UNSUPPORTED);
  if (g.activation === 'none') return no(SEV_RET.INACTIVE);
  if (glen === 0 || glen > MAX_PACKET_LENGTH || glen % 16 !== 0 || a.transCapacity === 0 || a.transCapacity < glen) return short();
  if (!isAligned16(guest)) return no(SEV_RET.INVALID_ADDRESS);
  const plaintext = fw.memory.readPrivate(guest, g.vek);
  const context = vmsa ? fw.options.vmsaTransportContext : ChannelContext.DATA;
  const p = sealTransportPacket({ tek: g.tek!, tik: g.tik!, plaintext, iv: fw.random(16), context });
  return { status: SEV_RET.SUCCESS, hdrLength: PACKET_HEADER_SIZE, transLength: glen, header: p.headerBytes, trans: p.trans };
}

/** SEND_FINISH (SUPDATE → SENT) and SEND_CANCEL (SUPDATE → RUNNING): WORKING; handle; SUPDATE; channel wiped. */
export function sendEnd(fw: FirmwareCore, handle: number, to: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.SUPDATE) return fail(SEV_RET.INVALID_GUEST_STATE);
  g.closeChannel();
  g.state = to;
  return OK;
}

/** RECEIVE_START (§3.4, §6): LAUNCH_START with a mandatory session; the sender's PDH plays the GODH; GSTATE RUPDATE. */
export function receiveStart(
  fw: FirmwareCore,
  a: { handle: number; policy: number; pdhCert: Uint8Array; session: Uint8Array },
): FwResult & { handle: number } {
  return startGuest(fw, { handle: a.handle, policy: a.policy, dhCert: a.pdhCert, session: a.session, state: GSTATE.RUPDATE });
}

/**
 * RECEIVE_UPDATE_DATA / _VMSA (§6), in AMD-ASPFW's order: WORKING; handle; RUPDATE; VMSA of a
 * non-ES guest ⇒ UNSUPPORTED; not activated ⇒ INACTIVE; trans length 0 / > 0x5000, guest length 0 /
 * ≠ trans length / not a 16 multiple, header < 52 ⇒ INVALID_LEN; guest address not 16-aligned ⇒
 * INVALID_ADDRESS; COMPRESSED ⇒ UNSUPPORTED (AMD-ASPFW checks the flag before the MAC here); MAC ⇒
 * BAD_MEASUREMENT. The plaintext is written as this guest's private memory.
 */
export function receiveUpdate(
  fw: FirmwareCore,
  handle: number,
  a: { header: Uint8Array; guest: PhysRange; trans: Uint8Array },
  vmsa: boolean,
): FwResult {
  const guest = checkPhysRange('args.guest', a.guest);
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.RUPDATE) return fail(SEV_RET.INVALID_GUEST_STATE);
  if (vmsa && !g.es) return fail(SEV_RET.UNSUPPORTED);
  if (g.activation === 'none') return fail(SEV_RET.INACTIVE);
  const glen = guest.bytes.length;
  const tlen = a.trans.length;
  if (tlen === 0 || tlen > MAX_PACKET_LENGTH || glen === 0 || glen !== tlen || glen % 16 !== 0 || a.header.length < PACKET_HEADER_SIZE) {
    return fail(SEV_RET.INVALID_LEN);
  }
  if (!isAligned16(guest)) return fail(SEV_RET.INVALID_ADDRESS);
  const header = parsePacketHeader(a.header.subarray(0, PACKET_HEADER_SIZE));
  if ((header.flags & PACKET_FLAG_COMPRESSED) !== 0) return fail(SEV_RET.UNSUPPORTED);
  let plain: Buffer;
  try {
    const context = vmsa ? fw.options.vmsaTransportContext : ChannelContext.DATA;
    plain = openTransportPacket({ tek: g.tek!, tik: g.tik!, header, trans: a.trans, guestLength: glen, context });
  } catch (e) {
    if (e instanceof SevMacError) return fail(SEV_RET.BAD_MEASUREMENT);
    throw e;
  }
  fw.memory.writePrivate(guest, g.vek, plain);
  plain.fill(0);
  return OK;
}

/** RECEIVE_FINISH: WORKING; handle; RUPDATE → RUNNING; completes a pending activation; channel wiped. */
export function receiveFinish(fw: FirmwareCore, handle: number): FwResult {
  if (fw.pstate !== PSTATE.WORKING) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  const g = fw.guest(handle);
  if (!g) return fail(SEV_RET.INVALID_GUEST);
  if (g.state !== GSTATE.RUPDATE) return fail(SEV_RET.INVALID_GUEST_STATE);
  completePendingActivation(fw, g);
  g.closeChannel();
  g.state = GSTATE.RUNNING;
  return OK;
}

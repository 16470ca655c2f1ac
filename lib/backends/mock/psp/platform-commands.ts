/**
 * Platform commands (SEV API spec ch. 5; docs/sev-reference.md §2.1, §7.3; state requirements from the command/state table,
 * check order from AMD-ASPFW's handlers): INIT, SHUTDOWN, PLATFORM_RESET, PLATFORM_STATUS, PEK_GEN,
 * PEK_CSR, PEK_CERT_IMPORT, PDH_CERT_EXPORT, PDH_GEN, DF_FLUSH, GET_ID.
 */
import { SEV_CERT_SIZE, SevUsage, isEcdsaAlgo, parseSevCert, serializeSevCert, verifySevLink } from '../../../crypto/index.js';
import type { SevCertificate, SevSignatureSlot } from '../../../crypto/index.js';
import { PSTATE } from '../../../uapi/constants.js';
import { SEV_RET } from '../../../uapi/sev-status.js';
import type { FwResult, PlatformStatusOut, SizedOut } from './api.js';
import { FirmwareCore, OK, certStatus, fail, isCertError } from './firmware-core.js';
import { CHIP_ID_SIZE } from './platform-keys.js';

/** PEK ‖ OCA ‖ CEK */
export const CERT_CHAIN_SIZE = 3 * SEV_CERT_SIZE;

function initOrWorking(fw: FirmwareCore): boolean {
  return fw.pstate === PSTATE.INIT || fw.pstate === PSTATE.WORKING;
}

/** INIT (0x01): UNINIT → INIT; derives/creates keys, marks every ASID dirty (§2.1, §11.7). */
export function init(fw: FirmwareCore, es: boolean): FwResult {
  if (fw.pstate !== PSTATE.UNINIT) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  // The ES flag is the only non-reserved INIT flag; a part without SEV-ES has it reserved.
  if (es && !fw.profile.sevEs) return fail(SEV_RET.INVALID_CONFIG);
  fw.identity.load(fw.options.regeneratePdhOnInit);
  fw.asids.markAllDirty();
  fw.esInit = es;
  fw.pstate = PSTATE.INIT;
  return OK;
}

/** SHUTDOWN (0x02): any state → UNINIT; decommissions every guest. */
export function shutdown(fw: FirmwareCore): FwResult {
  fw.guests.clear();
  fw.asids.markAllDirty();
  fw.esInit = false;
  fw.pstate = PSTATE.UNINIT;
  return OK;
}

/** PLATFORM_RESET (0x03): UNINIT only; deletes the persistent OCA, PEK, PDH and ownership. */
export function factoryReset(fw: FirmwareCore): FwResult {
  if (fw.pstate !== PSTATE.UNINIT) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  fw.identity.reset();
  return OK;
}

/** PLATFORM_STATUS (0x04): any state; owner, ES and guest count read as 0 in UNINIT. */
export function platformStatus(fw: FirmwareCore): PlatformStatusOut {
  const uninit = fw.pstate === PSTATE.UNINIT;
  return {
    status: SEV_RET.SUCCESS,
    apiMajor: fw.profile.apiMajor,
    apiMinor: fw.profile.apiMinor,
    state: fw.pstate,
    owner: !uninit && fw.identity.owned ? 1 : 0,
    config: !uninit && fw.esInit ? 1 : 0,
    build: fw.profile.build,
    guestCount: uninit ? 0 : fw.guests.count,
  };
}

/** PEK_GEN (0x05): INIT only; new OCA (self-owned), PEK and PDH. */
export function pekGen(fw: FirmwareCore): FwResult {
  if (fw.pstate !== PSTATE.INIT) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  fw.identity.generateOca();
  fw.identity.generatePek();
  fw.identity.generatePdh();
  return OK;
}

/** PEK_CSR (0x06): INIT or WORKING; the PEK body with no signatures; short buffer ⇒ INVALID_LEN + 0x824. */
export function pekCsr(fw: FirmwareCore, capacity: number): SizedOut {
  if (!initOrWorking(fw)) return { status: SEV_RET.INVALID_PLATFORM_STATE, length: capacity };
  if (capacity < SEV_CERT_SIZE) return { status: SEV_RET.INVALID_LEN, length: SEV_CERT_SIZE };
  return { status: SEV_RET.SUCCESS, length: SEV_CERT_SIZE, data: serializeSevCert(fw.identity.pekCsr()) };
}

/**
 * PEK_CERT_IMPORT (0x07), in AMD-ASPFW's order: INIT only; ALREADY_OWNED; both lengths exactly
 * 0x824 (INVALID_LEN); OCA self-signed, PEK signed by the OCA (BAD_SIGNATURE / INVALID_CERTIFICATE);
 * PEK body unchanged (INVALID_CERTIFICATE); the CEK signature moves into the imported PEK; the
 * platform becomes owned and gets a new PDH.
 */
export function pekCertImport(fw: FirmwareCore, pekBytes: Uint8Array, ocaBytes: Uint8Array): FwResult {
  if (fw.pstate !== PSTATE.INIT) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  if (fw.identity.owned) return fail(SEV_RET.ALREADY_OWNED);
  if (pekBytes.length !== SEV_CERT_SIZE || ocaBytes.length !== SEV_CERT_SIZE) return fail(SEV_RET.INVALID_LEN);
  const oca = parseSevCert(ocaBytes);
  const pek = parseSevCert(pekBytes);
  try {
    verifySevLink('oca-self', oca, oca, SevUsage.OCA, isEcdsaAlgo);
    verifySevLink('pek-by-oca', pek, oca, SevUsage.PEK, isEcdsaAlgo);
  } catch (e) {
    if (isCertError(e)) return fail(certStatus(e));
    throw e;
  }
  if (!fw.identity.isCurrentPekBody(pek)) return fail(SEV_RET.INVALID_CERTIFICATE);
  const cekSig = fw.identity.cekSignatureSlot();
  if (!cekSig) return fail(SEV_RET.INVALID_CERTIFICATE);
  const free = (s: SevSignatureSlot): boolean => s.usage === SevUsage.INVALID || s.usage === SevUsage.CEK;
  let signed: SevCertificate;
  if (free(pek.sig2)) signed = { ...pek, sig2: cekSig };
  else if (free(pek.sig1)) signed = { ...pek, sig1: cekSig };
  else return fail(SEV_RET.INVALID_CERTIFICATE);
  fw.identity.adopt(signed, oca);
  return OK;
}

export interface PdhCertExportOut extends FwResult {
  pdhLength: number;
  certsLength: number;
  pdh?: Uint8Array;
  certs?: Uint8Array;
}

/** PDH_CERT_EXPORT (0x08): INIT or WORKING; either buffer short ⇒ INVALID_LEN with both lengths. */
export function pdhCertExport(fw: FirmwareCore, pdhCapacity: number, certsCapacity: number): PdhCertExportOut {
  if (!initOrWorking(fw)) return { status: SEV_RET.INVALID_PLATFORM_STATE, pdhLength: pdhCapacity, certsLength: certsCapacity };
  const lengths = { pdhLength: SEV_CERT_SIZE, certsLength: CERT_CHAIN_SIZE };
  if (pdhCapacity < SEV_CERT_SIZE || certsCapacity < CERT_CHAIN_SIZE) return { status: SEV_RET.INVALID_LEN, ...lengths };
  return {
    status: SEV_RET.SUCCESS,
    ...lengths,
    pdh: serializeSevCert(fw.identity.pdh!),
    certs: fw.identity.certChain(fw.profile.exportsUnsignedCek === true),
  };
}

/** PDH_GEN (0x09): INIT or WORKING; a new PDH signed by the PEK. */
export function pdhGen(fw: FirmwareCore): FwResult {
  if (!initOrWorking(fw)) return fail(SEV_RET.INVALID_PLATFORM_STATE);
  fw.identity.generatePdh();
  return OK;
}

/** DF_FLUSH (0x0A): any state; dirty ASIDs become clean (WBINVD_REQUIRED if tracked and not done). */
export function dfFlush(fw: FirmwareCore): FwResult {
  if (fw.options.enforceWbinvd && !fw.wbinvdDone) return fail(SEV_RET.WBINVD_REQUIRED);
  fw.asids.flush();
  return OK;
}

/** GET_ID (0x0C): any state; 64 bytes per socket; short buffer ⇒ INVALID_LEN + required length. */
export function getId(fw: FirmwareCore, capacity: number): SizedOut {
  const need = CHIP_ID_SIZE * fw.options.sockets;
  if (capacity < need) return { status: SEV_RET.INVALID_LEN, length: need };
  const ids: Buffer[] = [];
  for (let s = 0; s < fw.options.sockets; s++) ids.push(fw.identity.chipId(s));
  return { status: SEV_RET.SUCCESS, length: need, data: Buffer.concat(ids) };
}

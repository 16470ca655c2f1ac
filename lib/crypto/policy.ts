/** The legacy SEV guest policy, a u32 (SEV API spec ch. 3; §1). */
import { SEV_POLICY, SEV_POLICY_RESERVED_MASK } from '../uapi/constants.js';
import { checkObject, checkU8, checkU32 } from '../uapi/args.js';

/** The policy bits (the uapi's SEV_POLICY, under the name this module has always used). */
export const SevPolicyBit = SEV_POLICY;
/** Bits 6–15 must be zero (LAUNCH_START/RECEIVE_START ⇒ POLICY_FAILURE otherwise). */
export { SEV_POLICY_RESERVED_MASK };

export interface SevPolicyFields {
  nodbg?: boolean;
  noks?: boolean;
  es?: boolean;
  nosend?: boolean;
  domain?: boolean;
  sev?: boolean;
  /** Minimum firmware API version (bits 16–23, 24–31). */
  apiMajor?: number;
  apiMinor?: number;
}

export function encodePolicy(f: SevPolicyFields): number {
  checkObject('fields', f);
  let p = 0;
  if (f.nodbg) p |= SevPolicyBit.NODBG;
  if (f.noks) p |= SevPolicyBit.NOKS;
  if (f.es) p |= SevPolicyBit.ES;
  if (f.nosend) p |= SevPolicyBit.NOSEND;
  if (f.domain) p |= SevPolicyBit.DOMAIN;
  if (f.sev) p |= SevPolicyBit.SEV;
  p |= checkU8('fields.apiMajor', f.apiMajor ?? 0) << 16;
  p |= checkU8('fields.apiMinor', f.apiMinor ?? 0) << 24;
  return p >>> 0;
}

export function decodePolicy(policy: number): Required<SevPolicyFields> & { reserved: number } {
  const p = checkU32('policy', policy);
  return {
    nodbg: (p & SevPolicyBit.NODBG) !== 0,
    noks: (p & SevPolicyBit.NOKS) !== 0,
    es: (p & SevPolicyBit.ES) !== 0,
    nosend: (p & SevPolicyBit.NOSEND) !== 0,
    domain: (p & SevPolicyBit.DOMAIN) !== 0,
    sev: (p & SevPolicyBit.SEV) !== 0,
    apiMajor: (p >>> 16) & 0xff,
    apiMinor: (p >>> 24) & 0xff,
    reserved: p & SEV_POLICY_RESERVED_MASK,
  };
}

/** Does firmware API (major, minor) meet the policy's minimum (§1)? */
export function policyAllowsApi(policy: number, apiMajor: number, apiMinor: number): boolean {
  const d = decodePolicy(policy);
  return apiMajor > d.apiMajor || (apiMajor === d.apiMajor && apiMinor >= d.apiMinor);
}

/** Key usage, algorithm and curve codes of SEV certificates (SEV API spec appendix C.1; §7.1). */

export const SevUsage = {
  ARK: 0x0000,
  ASK: 0x0013,
  INVALID: 0x1000,
  OCA: 0x1001,
  PEK: 0x1002,
  PDH: 0x1003,
  CEK: 0x1004,
} as const;
export type SevUsageName = keyof typeof SevUsage;

export const SevAlgo = {
  INVALID: 0x000,
  RSA_SHA256: 0x001,
  ECDSA_SHA256: 0x002,
  ECDH_SHA256: 0x003,
  RSA_SHA384: 0x101,
  ECDSA_SHA384: 0x102,
  ECDH_SHA384: 0x103,
} as const;
export type SevAlgoName = keyof typeof SevAlgo;

export const SevCurve = { P256: 1, P384: 2 } as const;

export function isKnownUsage(u: number): boolean {
  return Object.values(SevUsage).includes(u as never);
}
export function isKnownAlgo(a: number): boolean {
  return Object.values(SevAlgo).includes(a as never);
}
/** "Valid" in the firmware's slot check: known and not the INVALID marker. */
export function isValidUsage(u: number): boolean {
  return u !== SevUsage.INVALID && isKnownUsage(u);
}
export function isValidAlgo(a: number): boolean {
  return a !== SevAlgo.INVALID && isKnownAlgo(a);
}
export function isRsaAlgo(a: number): boolean {
  return a === SevAlgo.RSA_SHA256 || a === SevAlgo.RSA_SHA384;
}
export function isEcdsaAlgo(a: number): boolean {
  return a === SevAlgo.ECDSA_SHA256 || a === SevAlgo.ECDSA_SHA384;
}
export function isEcdhAlgo(a: number): boolean {
  return a === SevAlgo.ECDH_SHA256 || a === SevAlgo.ECDH_SHA384;
}
export function isEccAlgo(a: number): boolean {
  return isEcdsaAlgo(a) || isEcdhAlgo(a);
}
/** Hash named by an algorithm; for signatures it is the *signer's* algo that counts (§7.1). */
export function hashOfAlgo(a: number): 'sha256' | 'sha384' {
  return (a & 0x100) !== 0 ? 'sha384' : 'sha256';
}

export function usageName(u: number): string {
  for (const [k, v] of Object.entries(SevUsage)) if (v === u) return k;
  return `0x${u.toString(16)}`;
}
export function algoName(a: number): string {
  for (const [k, v] of Object.entries(SevAlgo)) if (v === a) return k;
  return `0x${a.toString(16)}`;
}

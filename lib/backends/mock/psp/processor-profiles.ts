/**
 * Processor / firmware generations the mock PSP can play (api.ts `ProcessorProfile`).
 *
 * Values and where they come from (none is a measurement of a particular machine):
 * - API version / build: what each generation's released SEV firmware reports in PLATFORM_STATUS.
 *   Genoa 1.55 build 25 is the version of AMD's published firmware source (amd/AMD-ASPFW,
 *   docs/sev-reference.md §0); Naples 0.17.48, Rome 0.24.15 and Milan 1.51.3 are plausible public values
 *   (versions seen in sevctl/QEMU reports), not guaranteed to match a given BIOS.
 * - maxSevAsid (CPUID 0x8000001F ECX): Naples 15, Rome and Milan 509, Genoa 1006 (AMD PPRs /
 *   kernel boot messages "SEV supported: N ASIDs").
 * - minSevAsid (CPUID 0x8000001F EDX): set by the BIOS ("SEV-ES ASID space limit"); 100 is a
 *   plausible setting. Naples has no SEV-ES, so 1 (no ES-only ASIDs; docs/sev-reference.md §2.2).
 * - cbitPosition (CPUID 0x8000001F EBX[5:0]): 47 on Naples and Rome, 51 on Milan and Genoa (the
 *   cbitpos QEMU configurations for these parts use).
 * - exportsUnsignedCek: Genoa firmware exports an unsigned CEK placeholder from PDH_CERT_EXPORT;
 *   owners fetch the ASK-signed CEK from AMD's KDS (docs/sev-reference.md §7.3).
 */
import type { ProcessorProfile } from './api.js';

export const NAPLES: ProcessorProfile = Object.freeze({
  name: 'naples',
  apiMajor: 0,
  apiMinor: 17,
  build: 48,
  maxSevAsid: 15,
  minSevAsid: 1,
  cbitPosition: 47,
  sevEs: false,
});

export const ROME: ProcessorProfile = Object.freeze({
  name: 'rome',
  apiMajor: 0,
  apiMinor: 24,
  build: 15,
  maxSevAsid: 509,
  minSevAsid: 100,
  cbitPosition: 47,
  sevEs: true,
});

export const MILAN: ProcessorProfile = Object.freeze({
  name: 'milan',
  apiMajor: 1,
  apiMinor: 51,
  build: 3,
  maxSevAsid: 509,
  minSevAsid: 100,
  cbitPosition: 51,
  sevEs: true,
  sevSnp: true,
});

export const GENOA: ProcessorProfile = Object.freeze({
  name: 'genoa',
  apiMajor: 1,
  apiMinor: 55,
  build: 25,
  maxSevAsid: 1006,
  minSevAsid: 100,
  cbitPosition: 51,
  sevEs: true,
  sevSnp: true,
  exportsUnsignedCek: true,
});

export const PROFILES: Readonly<Record<ProcessorProfile['name'], ProcessorProfile>> = Object.freeze({
  naples: NAPLES,
  rome: ROME,
  milan: MILAN,
  genoa: GENOA,
});

/** Does the profile's firmware implement a command introduced at API `major.minor`? */
export function apiAtLeast(profile: ProcessorProfile, major: number, minor: number): boolean {
  return profile.apiMajor > major || (profile.apiMajor === major && profile.apiMinor >= minor);
}

/**
 * Processor / firmware generations the mock host can be. The colleague's lib/mock/psp holds the
 * firmware; this table is what the kernel side needs (CPUID 0x8000001F, ASID ranges, API version).
 * Values follow shipping EPYC parts with a typical BIOS split of the ASID space (min_sev_asid 100 on
 * ES-capable parts; Naples has no SEV-ES and so no split).
 */
import type { ProcessorProfile } from './psp/api.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../uapi/errors.js';

export type ProcessorName = ProcessorProfile['name'];

export const PROCESSORS: Readonly<Record<ProcessorName, ProcessorProfile>> = Object.freeze({
  naples: Object.freeze({ name: 'naples', apiMajor: 0, apiMinor: 17, build: 48, maxSevAsid: 15, minSevAsid: 1, cbitPosition: 47, sevEs: false }),
  rome: Object.freeze({ name: 'rome', apiMajor: 0, apiMinor: 24, build: 15, maxSevAsid: 509, minSevAsid: 100, cbitPosition: 47, sevEs: true }),
  milan: Object.freeze({ name: 'milan', apiMajor: 1, apiMinor: 55, build: 21, maxSevAsid: 509, minSevAsid: 100, cbitPosition: 51, sevEs: true }),
  genoa: Object.freeze({ name: 'genoa', apiMajor: 1, apiMinor: 55, build: 38, maxSevAsid: 1006, minSevAsid: 100, cbitPosition: 51, sevEs: true }),
} as const);

/** A profile by name, or a custom one (checked), e.g. a tiny ASID space for exhaustion tests. */
export function resolveProcessor(p: ProcessorName | ProcessorProfile | undefined): ProcessorProfile {
  if (p === undefined) return PROCESSORS.milan;
  if (typeof p === 'string') {
    const found = (PROCESSORS as Record<string, ProcessorProfile>)[p];
    if (!found) throw invalidArgValue('options.processor', p, "must be 'naples', 'rome', 'milan', 'genoa' or a ProcessorProfile");
    return found;
  }
  if (typeof p !== 'object' || p === null) throw invalidArgType('options.processor', 'string or object', p);
  const int = (k: keyof ProcessorProfile, min: number, max: number): void => {
    const v = p[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw outOfRange(`options.processor.${k}`, `an integer >= ${min} && <= ${max}`, v);
  };
  int('apiMajor', 0, 255);
  int('apiMinor', 0, 255);
  int('build', 0, 255);
  int('maxSevAsid', 0, 4096);
  int('minSevAsid', 1, 4097);
  int('cbitPosition', 0, 63);
  if (typeof p.sevEs !== 'boolean') throw invalidArgType('options.processor.sevEs', 'boolean', p.sevEs);
  return Object.freeze({ ...p });
}

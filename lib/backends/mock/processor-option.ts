/**
 * Processor / firmware generations the mock host can be: the firmware's profiles (psp/processor-profiles.ts),
 * or a custom profile (checked), e.g. a tiny ASID space for exhaustion tests.
 */
import type { ProcessorProfile } from './psp/api.js';
import { PROFILES } from './psp/processor-profiles.js';
import { invalidArgType, invalidArgValue, outOfRange } from '../../uapi/errors.js';

export type ProcessorName = ProcessorProfile['name'];

export const PROCESSORS: Readonly<Record<ProcessorName, ProcessorProfile>> = PROFILES;
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
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw outOfRange(`options.processor.${k}`, `an integer >= ${min} && <= ${max}`, v);
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

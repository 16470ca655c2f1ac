/** Parsed access to the built-in AMD roots of amd-roots.ts, and generation lookup. */
import { createHash } from 'node:crypto';
import { bytesEqual } from './bytes.js';
import { parseAmdCert, toAmdCert } from './amd-cert.js';
import type { AmdCertificate } from './amd-cert.js';
import { AMD_GENERATIONS, AMD_ROOTS } from './amd-root-certs.js';
import type { AmdGeneration } from './amd-root-certs.js';
import { invalidArgValue } from './errors.js';

export interface AmdRootPair {
  readonly generation: AmdGeneration;
  readonly ark: AmdCertificate;
  readonly ask: AmdCertificate;
}

const cache = new Map<AmdGeneration, AmdRootPair>();

function decode(b64: string, sha256: string, what: string): Buffer {
  const bytes = Buffer.from(b64, 'base64');
  // Guards against a damaged data file: the roots are the trust anchor.
  if (createHash('sha256').update(bytes).digest('hex') !== sha256) throw new Error(`built-in ${what} does not match its sha256`);
  return bytes;
}

export function builtinRoots(generation: AmdGeneration): AmdRootPair {
  if (!AMD_GENERATIONS.includes(generation)) {
    throw invalidArgValue('generation', generation, `must be one of ${AMD_GENERATIONS.join(', ')}`);
  }
  let pair = cache.get(generation);
  if (!pair) {
    const d = AMD_ROOTS[generation];
    pair = Object.freeze({
      generation,
      ark: parseAmdCert(decode(d.ark, d.arkSha256, `${generation} ARK`)),
      ask: parseAmdCert(decode(d.ask, d.askSha256, `${generation} ASK`)),
    });
    cache.set(generation, pair);
  }
  return pair;
}

export function allBuiltinRoots(): AmdRootPair[] {
  return AMD_GENERATIONS.map((g) => builtinRoots(g));
}

/** Generation of an ARK (same key id and modulus as a built-in ARK), or undefined. */
export function identifyGeneration(ark: AmdCertificate | Uint8Array): AmdGeneration | undefined {
  const a = toAmdCert(ark, 'ark');
  for (const g of AMD_GENERATIONS) {
    const b = builtinRoots(g).ark;
    if (bytesEqual(a.keyId, b.keyId) && bytesEqual(a.modulus, b.modulus) && bytesEqual(a.pubExp, b.pubExp)) return g;
  }
  return undefined;
}

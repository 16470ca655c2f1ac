/**
 * The mock AMD root: an ARK and ASK in AMD's certificate format (sev-firmware.md §7.2), minted with
 * lib/sev-crypto and generated once per process per key size, so every mock platform of a process
 * chains to the same root (and two MockFirmware instances can migrate guests to each other). Real
 * roots are RSA-2048 on Naples and RSA-4096 from Rome on; RSA-4096 generation takes seconds, so the
 * asynchronous variant exists for callers that should not block.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SevUsage, createAmdCert, mintAmdRoot, rsaComponents, signAmdCert } from '../../sev-crypto/index.js';
import type { MintedAmdRoot, RsaRootBits } from '../../sev-crypto/index.js';
import { invalidArgValue } from '../../uapi/errors.js';
import type { ProcessorProfile } from './api.js';

/** The root a mock firmware signs its CEK with (ARK, ASK and their RSA private keys). */
export type MockAmdRoot = MintedAmdRoot;

const roots = new Map<RsaRootBits, MockAmdRoot>();
const pending = new Map<RsaRootBits, Promise<MockAmdRoot>>();

/** RSA size of the generation's real AMD root: 2048 for Naples, 4096 after. */
export function rootBitsFor(profile: ProcessorProfile): RsaRootBits {
  return profile.name === 'naples' ? 2048 : 4096;
}

function checkBits(bits: unknown): RsaRootBits {
  if (bits !== 2048 && bits !== 4096) throw invalidArgValue('bits', bits, 'must be 2048 or 4096');
  return bits;
}

/** Key id as lib/sev-crypto's minting derives it: SHA-256 of the modulus, first 16 bytes. */
function keyId(key: KeyObject): Buffer {
  return createHash('sha256').update(rsaComponents(key).n).digest().subarray(0, 16);
}

/** The process's mock root of this size, generated synchronously on first use. */
export function mockAmdRoot(bits: RsaRootBits = 4096): MockAmdRoot {
  const b = checkBits(bits);
  let root = roots.get(b);
  if (!root) {
    const gen = (): KeyObject => generateKeyPairSync('rsa', { modulusLength: b, publicExponent: 0x10001 }).privateKey;
    const arkKey = gen();
    const askKey = gen();
    const ark = signAmdCert(createAmdCert({ keyId: keyId(arkKey), keyUsage: SevUsage.ARK, publicKey: arkKey }), arkKey);
    const ask = signAmdCert(createAmdCert({ keyId: keyId(askKey), certifyingId: ark.keyId, keyUsage: SevUsage.ASK, publicKey: askKey }), arkKey);
    root = Object.freeze({ ark, ask, arkKey, askKey });
    roots.set(b, root);
  }
  return root;
}

/**
 * The same root as {@link mockAmdRoot}, generated without blocking the event loop. Whichever call
 * finishes first defines the process's root; later calls of either kind return it.
 */
export async function mockAmdRootAsync(bits: RsaRootBits = 4096): Promise<MockAmdRoot> {
  const b = checkBits(bits);
  const have = roots.get(b);
  if (have) return have;
  let p = pending.get(b);
  if (!p) {
    p = mintAmdRoot({ bits: b, cacheName: 'mock-psp' }).then((minted) => {
      pending.delete(b);
      const existing = roots.get(b);
      if (existing) return existing;
      const root = Object.freeze({ ...minted });
      roots.set(b, root);
      return root;
    });
    pending.set(b, p);
    p.catch(() => pending.delete(b));
  }
  return p;
}

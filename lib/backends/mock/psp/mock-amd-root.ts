/**
 * The mock AMD root: an ARK and ASK in AMD's certificate format (SEV API spec appendix B; docs/sev-reference.md §7.2), minted with
 * lib/crypto over fixed keys (mock-amd-root-keys.ts), so every mock platform of every process chains
 * to the same root, as real platforms chain to AMD's (and two MockFirmware instances can migrate
 * guests to each other). Real roots are RSA-2048 on Naples and RSA-4096 from Rome on.
 */
import { createHash, createPrivateKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SevUsage, createAmdCert, rsaComponents, signAmdCert } from '../../../crypto/index.js';
import type { AmdCertificate, MintedAmdRoot, RsaRootBits } from '../../../crypto/index.js';
import { invalidArgValue } from '../../../uapi/errors.js';
import { MOCK_ARK_2048, MOCK_ARK_4096, MOCK_ASK_2048, MOCK_ASK_4096 } from './mock-amd-root-keys.js';
import type { ProcessorProfile } from './api.js';

/** The root a mock firmware signs its CEK with (ARK, ASK and their RSA private keys). */
export type MockAmdRoot = MintedAmdRoot;

const roots = new Map<RsaRootBits, MockAmdRoot>();

/** RSA size of the generation's real AMD root: 2048 for Naples, 4096 after. */
export function rootBitsFor(profile: ProcessorProfile): RsaRootBits {
  return profile.name === 'naples' ? 2048 : 4096;
}

function checkBits(bits: unknown): RsaRootBits {
  if (bits !== 2048 && bits !== 4096) throw invalidArgValue('bits', bits, 'must be 2048 or 4096');
  return bits;
}

/** Key id as lib/crypto's minting derives it: SHA-256 of the modulus, first 16 bytes. */
function keyId(key: KeyObject): Buffer {
  return createHash('sha256').update(rsaComponents(key).n).digest().subarray(0, 16);
}

/**
 * The mock root of this size, with its private keys (the mock firmware signs its CEK with the ASK's):
 * a test root, not AMD's. Its certificates are signed once per process; the keys are fixed.
 */
export function mockAmdRoot(bits: RsaRootBits = 4096): MockAmdRoot {
  const b = checkBits(bits);
  let root = roots.get(b);
  if (!root) {
    const arkKey: KeyObject = createPrivateKey(b === 2048 ? MOCK_ARK_2048 : MOCK_ARK_4096);
    const askKey: KeyObject = createPrivateKey(b === 2048 ? MOCK_ASK_2048 : MOCK_ASK_4096);
    const ark = signAmdCert(createAmdCert({ keyId: keyId(arkKey), keyUsage: SevUsage.ARK, publicKey: arkKey }), arkKey);
    const ask = signAmdCert(
      createAmdCert({ keyId: keyId(askKey), certifyingId: ark.keyId, keyUsage: SevUsage.ASK, publicKey: askKey }),
      arkKey,
    );
    root = Object.freeze({ ark, ask, arkKey, askKey });
    roots.set(b, root);
  }
  return root;
}

/**
 * **A mock root, for tests only**: the ARK and ASK (certificates only, no keys) of kvm-sev's mock
 * AMD root, both sizes (RSA-2048 as on Naples, RSA-4096 after). Every mock and hybrid platform's
 * chain ends in one of them, so a guest owner testing against the mock trusts them as extra roots:
 *
 * ```ts
 * import { Kvm, SevPlatform } from 'kvm-sev';
 * import { MockHost, mockAmdRoots } from 'kvm-sev/mock';
 * import { parsePlatformCerts, verifyChain } from 'kvm-sev/owner';
 * using kvm = Kvm.open({ backend: new MockHost() });
 * await using sev = SevPlatform.open(kvm.backend);
 * const { pdh, certChain } = await sev.pdhCertExport();
 * const chain = verifyChain({ pdh, ...parsePlatformCerts(certChain), extraRoots: mockAmdRoots() }); // tests only
 * console.log(chain.generation); // undefined: not one of AMD's roots
 * ```
 *
 * Their private keys are in this package, so a chain that ends in them proves nothing about the
 * hardware: never trust them outside tests. Without them, verifyChain's error says that the chain
 * is signed by the kvm-sev mock root.
 */
export function mockAmdRoots(): { ark: AmdCertificate; ask: AmdCertificate }[] {
  return ([2048, 4096] as const).map((bits) => {
    const r = mockAmdRoot(bits);
    return { ark: r.ark, ask: r.ask };
  });
}

/** The same root as {@link mockAmdRoot} (kept for callers written when generating it took seconds). */
export async function mockAmdRootAsync(bits: RsaRootBits = 4096): Promise<MockAmdRoot> {
  return mockAmdRoot(bits);
}

/**
 * The kvm-sev mock root, from the guest owner's side: `mockAmdRoots()` (kvm-sev/mock) is what a test
 * trusts; without it, verifyChain's error says that the chain is signed by the kvm-sev mock root,
 * found from lib/crypto's fingerprints alone (lib/owner never imports the mock). The fingerprints
 * are the mock root's.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { MockHost, mockAmdRoot, mockAmdRoots, type MockFirmware } from '../../lib/backends/mock/index.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { SevChainError, builtinRoots, parsePlatformCerts, serializeSevCert, verifyChain } from '../../lib/owner/index.js';
import { cekSignedByMockRoot, isMockRootCert, mockRootFingerprints } from '../../lib/crypto/mock-root-fingerprints.js';
import { flip } from '../helpers/cert-fixtures.js';
import { mintAmdRoot, mintPlatformChain } from '../../lib/crypto/mint.js';

async function mockPlatformChain(processor: 'naples' | 'milan') {
  const host = new MockHost({ processor });
  using kvm = Kvm.open({ backend: host });
  await using sev = SevPlatform.open(kvm.backend);
  const { pdh, certChain } = await sev.pdhCertExport();
  return { pdh, ...parsePlatformCerts(certChain), amd: (host.firmware as MockFirmware).amdCerts() };
}

test("lib/crypto's fingerprints are the mock root's keys (both sizes)", (t) => {
  const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
  const facts = mockRootFingerprints();
  for (const bits of [2048, 4096] as const) {
    const r = mockAmdRoot(bits);
    const f = facts.find((x) => x.bits === bits)!;
    t.is(f.arkModulusSha256, sha(r.ark.modulus), `${bits} ARK`);
    t.is(f.askModulusSha256, sha(r.ask.modulus), `${bits} ASK`);
    t.is(Buffer.from(f.askModulus, 'base64').reverse().toString('hex'), r.ask.modulus.toString('hex'), `${bits} ASK key`);
    t.true(isMockRootCert(r.ark) && isMockRootCert(r.ask));
  }
  t.deepEqual(
    mockAmdRoots().map((r) => r.ark.modulusBits),
    [2048, 4096],
  );
  t.false(isMockRootCert(builtinRoots('milan').ark), "AMD's roots are not the mock's");
});

for (const processor of ['naples', 'milan'] as const) {
  test(`${processor} mock chain: trusted with mockAmdRoots(); without, the error names the kvm-sev mock root`, async (t) => {
    const c = await mockPlatformChain(processor);
    const certs = { pdh: c.pdh, pek: c.pek, oca: c.oca, cek: c.cek };
    t.true(cekSignedByMockRoot(c.cek));
    const v = verifyChain({ ...certs, extraRoots: mockAmdRoots() });
    t.is(v.generation, undefined, 'not an AMD generation');

    // Against AMD's roots alone (the case: no ARK/ASK from the platform).
    const e = t.throws(() => verifyChain(certs), { instanceOf: SevChainError });
    t.is(e.link, 'cek-by-ask');
    t.regex(e.message, /signed by the kvm-sev mock AMD root/);
    t.regex(e.hint ?? '', /extraRoots: mockAmdRoots\(\)/);
    t.regex(e.hint ?? '', /never in production/);

    // The platform sent its (mock) ARK and ASK: untrusted, and said to be the mock's.
    const half = c.amd.length / 2;
    const withRoot = { ...certs, ask: c.amd.subarray(0, half), ark: c.amd.subarray(half) };
    const e2 = t.throws(() => verifyChain(withRoot), { instanceOf: SevChainError });
    t.is(e2.link, 'ark-self');
    t.is(e2.reason, 'untrusted-root');
    t.regex(e2.message, /signed by the kvm-sev mock AMD root/);
    t.notThrows(() => verifyChain({ ...withRoot, extraRoots: mockAmdRoots() }));

    // Trusted, but broken further down: the error is the real one, with no word about the mock.
    const e3 = t.throws(() => verifyChain({ ...certs, pek: flip(serializeSevCert(c.pek), 0x20), extraRoots: mockAmdRoots() }), {
      instanceOf: SevChainError,
    });
    t.notRegex(e3.message, /mock/);
  });
}

test('a chain of another root fails without a word about the mock', async (t) => {
  // Any root but the mock's (a freshly minted one): what an AMD-rooted chain's failures look like too.
  const root = await mintAmdRoot({ bits: 2048, cacheName: 'owner-test' });
  const p = mintPlatformChain({ ask: root.ask, askKey: root.askKey });
  const certs = { cek: p.cek, oca: p.oca, pek: p.pek, pdh: p.pdh };
  t.false(cekSignedByMockRoot(p.cek));
  t.false(isMockRootCert(root.ark) || isMockRootCert(root.ask));
  const e = t.throws(() => verifyChain(certs), { instanceOf: SevChainError });
  t.is(e.link, 'cek-by-ask');
  t.notRegex(e.message, /mock/);
  t.is(e.hint, undefined);
  const e2 = t.throws(() => verifyChain({ ...certs, ark: root.ark, ask: root.ask }), { instanceOf: SevChainError });
  t.is(e2.reason, 'untrusted-root');
  t.notRegex(e2.message, /mock/);
  t.notThrows(() => verifyChain({ ...certs, extraRoots: [{ ark: root.ark, ask: root.ask }] }));
});

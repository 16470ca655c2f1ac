/** SEV and AMD certificates: real AMD chains, swapped links, tampered bytes, minted chains (§: docs/sev-reference.md). */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { constants, createHash, createHmac, createPublicKey, verify as nodeVerify } from 'node:crypto';
import {
  P384,
  SevAlgo,
  SevCertError,
  SevChainError,
  SevFormatError,
  SevUsage,
  builtinRoots,
  checkGodhCert,
  checkSevCertBody,
  createSevCert,
  deriveCekKey,
  generateP384,
  identifyGeneration,
  mintAmdRoot,
  mintChain,
  mintPlatformChain,
  p384PointOf,
  parseAmdCert,
  parseSevCert,
  serializeAmdCert,
  serializeSevCert,
  sevCertBody,
  sevCertPoint,
  signSevCert,
  verifyAmdCert,
  verifyFullChain as verifyChain,
  verifyOcaChain,
  verifySevCert,
} from '../../lib/crypto/index.js';
import type { ChainInput, ChainLink, CertFailureReason } from '../../lib/crypto/index.js';
import { verifyChain as ownerVerifyChain, parseCertBundle } from '../../lib/owner/index.js';
import { GENERATIONS, PLATFORMS, fixture, flip, platformCerts, rootCerts, withU32 } from '../helpers/cert-fixtures.js';
import type { Platform } from '../helpers/cert-fixtures.js';

const SIG1 = 0x41c;
const SIG2 = 0x624;

function chainOf(p: Platform): { ark: Buffer; ask: Buffer; cek: Buffer; oca: Buffer; pek: Buffer; pdh: Buffer } {
  return { ...rootCerts(p), ...platformCerts(p) };
}

function expectChainError(t: ExecutionContext, fn: () => unknown, link: ChainLink, reason: CertFailureReason, msg?: string): void {
  const e = t.throws(fn, { instanceOf: SevChainError }, msg);
  if (e) {
    t.is(e.link, link, msg ?? e.message);
    t.is(e.reason, reason, msg ?? e.message);
    t.is(e.code, 'ERR_SEV_CHAIN');
  }
}

// ---- codecs ----------------------------------------------------------------------------------

test('every fixture survives parse → serialize bit-exactly', (t) => {
  let n = 0;
  for (const g of GENERATIONS) {
    for (const f of ['ark', 'ask']) {
      const b = fixture(`amd-root/${g}/${f}.cert`);
      t.true(serializeAmdCert(parseAmdCert(b)).equals(b), `${g}/${f}`);
      n++;
    }
  }
  for (const p of PLATFORMS) {
    for (const [name, b] of Object.entries(platformCerts(p))) {
      t.true(serializeSevCert(parseSevCert(b)).equals(b), `${p}/${name}`);
      n++;
    }
  }
  t.is(n, 18);
});

test('SEV certificate fields decode as §7.1 says (Rome PEK, Naples CEK)', (t) => {
  const pek = parseSevCert(platformCerts('rome').pek);
  t.is(pek.version, 1);
  t.deepEqual([pek.apiMajor, pek.apiMinor], [0, 22]);
  t.is(pek.pubKeyUsage, SevUsage.PEK);
  t.is(pek.pubKeyAlgo, SevAlgo.ECDSA_SHA256);
  t.is(pek.pubKey.kind, 'ecc');
  if (pek.pubKey.kind === 'ecc') t.is(pek.pubKey.curve, 2);
  t.deepEqual([pek.sig1.usage, pek.sig1.algo], [SevUsage.OCA, SevAlgo.ECDSA_SHA256]);
  t.deepEqual([pek.sig2.usage, pek.sig2.algo], [SevUsage.CEK, SevAlgo.ECDSA_SHA256]);
  t.true('point' in sevCertPoint(pek));

  const cek = parseSevCert(platformCerts('naples').cek);
  t.deepEqual([cek.apiMajor, cek.apiMinor], [0, 14]);
  t.deepEqual([cek.sig1.usage, cek.sig1.algo], [SevUsage.ASK, SevAlgo.RSA_SHA256]);
  t.deepEqual([cek.sig2.usage, cek.sig2.algo], [SevUsage.INVALID, SevAlgo.INVALID]);
  t.is(parseSevCert(platformCerts('rome').cek).sig1.algo, SevAlgo.RSA_SHA384);

  const pdh = parseSevCert(platformCerts('rome').pdh);
  t.deepEqual([pdh.pubKeyUsage, pdh.pubKeyAlgo], [SevUsage.PDH, SevAlgo.ECDH_SHA256]);
  t.is(sevCertBody(pdh).length, 0x414);
});

test('AMD certificate fields decode as §7.2 says', (t) => {
  const naples = builtinRoots('naples');
  t.is(naples.ark.modulusBits, 2048);
  t.is(serializeAmdCert(naples.ark).length, 0x340);
  t.is(naples.ark.keyUsage, 0);
  t.true(naples.ark.keyId.equals(naples.ark.certifyingId));
  t.is(naples.ask.keyUsage, 0x13);
  t.true(naples.ask.certifyingId.equals(naples.ark.keyId));
  const rome = builtinRoots('rome');
  t.is(rome.ark.modulusBits, 4096);
  t.is(serializeAmdCert(rome.ask).length, 0x640);
});

test('malformed inputs are refused with typed errors', (t) => {
  t.throws(() => parseSevCert(Buffer.alloc(0x823)), { instanceOf: SevFormatError });
  t.throws(() => parseAmdCert(Buffer.alloc(0x40)), { instanceOf: SevFormatError });
  t.throws(() => parseAmdCert(Buffer.concat([rootCerts('rome').ark, Buffer.alloc(1)])), { instanceOf: SevFormatError });
  t.throws(() => parseSevCert('cert' as unknown as Uint8Array), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' });
  const pek = parseSevCert(platformCerts('rome').pek);
  t.throws(() => serializeSevCert({ ...pek, sig1: { ...pek.sig1, sig: Buffer.alloc(10) } }), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => serializeSevCert({ ...pek, apiMinor: 256 }), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});

// ---- AMD roots -------------------------------------------------------------------------------

for (const g of GENERATIONS) {
  test(`${g}: ARK self-signed, ASK signed by ARK, generation identified`, (t) => {
    const { ark, ask } = rootCerts(g);
    t.deepEqual(verifyAmdCert(ark, ark), { ok: true, slot: 1 });
    t.deepEqual(verifyAmdCert(ask, ark), { ok: true, slot: 1 });
    t.is(identifyGeneration(ark), g);
    t.true(serializeAmdCert(builtinRoots(g).ark).equals(ark));
    t.true(serializeAmdCert(builtinRoots(g).ask).equals(ask));
    // The ASK does not sign the ARK.
    t.false(verifyAmdCert(ark, ask).ok);
  });
}

test('AMD signature hash follows the signer size: SHA-256 for Naples, SHA-384 for Rome', (t) => {
  // Independently: RSA-PSS over bytes 0..end of modulus, salt = hash length.
  for (const [g, hash, salt] of [
    ['naples', 'sha256', 32],
    ['rome', 'sha384', 48],
  ] as const) {
    const { ark } = builtinRoots(g);
    const raw = serializeAmdCert(ark);
    const m = ark.modulusBits / 8;
    const key = createPublicKey({
      key: { kty: 'RSA', n: Buffer.from(ark.modulus).reverse().toString('base64url'), e: 'AQAB' },
      format: 'jwk',
    });
    const padding = constants.RSA_PKCS1_PSS_PADDING;
    const signed = raw.subarray(0, raw.length - m);
    t.true(nodeVerify(hash, signed, { key, padding, saltLength: salt }, Buffer.from(ark.signature).reverse()));
    t.false(
      nodeVerify(hash === 'sha256' ? 'sha384' : 'sha256', signed, { key, padding, saltLength: salt }, Buffer.from(ark.signature).reverse()),
    );
  }
});

test('AMD certificate tampering: every byte class fails with its reason', (t) => {
  const { ark, ask } = rootCerts('milan');
  const pe = ask.readUInt32LE(0x38) / 8;
  const cases: Array<[string, Buffer, Buffer, CertFailureReason]> = [
    ['ASK version', withU32(ask, 0, 2), ark, 'bad-version'],
    ['ASK key id', flip(ask, 0x04), ark, 'bad-signature'],
    ['ASK certifying id', flip(ask, 0x14), ark, 'key-id-mismatch'],
    ['ASK usage', withU32(ask, 0x24, 0), ark, 'bad-signature'],
    ['ASK modulus', flip(ask, 0x40 + pe + 100), ark, 'bad-signature'],
    ['ASK exponent', flip(ask, 0x40 + 1), ark, 'bad-signature'],
    ['ASK signature', flip(ask, ask.length - 1), ark, 'bad-signature'],
    ['ARK signature (self)', flip(ark, ark.length - 7), flip(ark, ark.length - 7), 'bad-signature'],
  ];
  for (const [name, child, parent, reason] of cases) {
    const r = verifyAmdCert(child, parent);
    t.false(r.ok, name);
    if (!r.ok) t.is(r.reason, reason, name);
  }
  // Sizes the firmware does not know.
  const odd = withU32(withU32(ask, 0x3c, 3072), 0x38, 4096);
  t.throws(() => parseAmdCert(odd), { instanceOf: SevFormatError });
});

// ---- the real platform chains ------------------------------------------------------------------

for (const p of PLATFORMS) {
  test(`${p}: the real chain verifies against its generation's roots`, (t) => {
    const v = verifyChain(chainOf(p), { trustedArks: [builtinRoots(p).ark] });
    t.is(v.generation, p);
    t.is(v.pdh.pubKeyUsage, SevUsage.PDH);
    // Owner API: finds the generation by itself among the built-in roots.
    t.is(ownerVerifyChain(platformCerts(p)).generation, p);
    t.is(ownerVerifyChain({ ...platformCerts(p), generation: p }).generation, p);
    // Every link individually.
    const c = platformCerts(p);
    t.deepEqual(verifySevCert(c.pek, parseSevCert(c.cek)), { ok: true, slot: 2 });
    t.deepEqual(verifySevCert(c.pek, parseSevCert(c.oca)), { ok: true, slot: 1 });
    t.deepEqual(verifySevCert(c.oca, parseSevCert(c.oca)), { ok: true, slot: 1 });
    t.deepEqual(verifySevCert(c.pdh, parseSevCert(c.pek)), { ok: true, slot: 1 });
    t.deepEqual(verifySevCert(c.cek, builtinRoots(p).ask), { ok: true, slot: 1 });
    t.notThrows(() => verifyOcaChain(c));
  });
}

test('a sevctl-style bundle (PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK) splits and verifies', (t) => {
  const c = platformCerts('rome');
  const r = rootCerts('rome');
  const b = parseCertBundle(Buffer.concat([c.pdh, c.pek, c.oca, c.cek, r.ask, r.ark]));
  t.true(serializeSevCert(b.pek).equals(c.pek));
  t.truthy(b.ark && b.ask);
  t.is(ownerVerifyChain({ ...b, ark: b.ark, ask: b.ask }).generation, 'rome');
  t.throws(() => parseCertBundle(Buffer.concat([c.pdh, c.pek, c.oca])), { instanceOf: SevFormatError });
});

// ---- swapped links ------------------------------------------------------------------------------

test('swapped links fail at the right link', (t) => {
  const rome = chainOf('rome');
  const naples = chainOf('naples');
  const milan = rootCerts('milan');
  // Wrong ASK: Naples' CEK is signed RSA_SHA256 (0x1); a 4096-bit ASK signs 0x101 ⇒ no slot matches.
  expectChainError(t, () => verifyChain({ ...naples, ark: rome.ark, ask: rome.ask }), 'cek-by-ask', 'no-matching-signature');
  // Same algorithm, other key: Rome's CEK under Milan's ASK.
  expectChainError(t, () => verifyChain({ ...rome, ark: milan.ark, ask: milan.ask }), 'cek-by-ask', 'bad-signature');
  // An ASK of another generation under this ARK.
  expectChainError(t, () => verifyChain({ ...rome, ask: milan.ask }), 'ask-by-ark', 'key-id-mismatch');
  // … even when it claims the right certifying id.
  const forged = Buffer.from(milan.ask);
  rome.ark.copy(forged, 0x14, 0x04, 0x14);
  expectChainError(t, () => verifyChain({ ...rome, ask: forged }), 'ask-by-ark', 'bad-signature');
  // ASK and ARK exchanged.
  expectChainError(t, () => verifyChain({ ...rome, ark: rome.ask, ask: rome.ark }), 'ark-self', 'wrong-usage');
  // The PEK of the other platform.
  expectChainError(t, () => verifyChain({ ...rome, pek: naples.pek }), 'pek-by-cek', 'bad-signature');
  // The CEK of the other platform (same ASK algorithm family is not the point: Naples' CEK is RSA_SHA256).
  expectChainError(t, () => verifyChain({ ...rome, cek: naples.cek }), 'cek-by-ask', 'no-matching-signature');
  // The OCA of the other platform: it is validly self-signed, but did not sign this PEK.
  expectChainError(t, () => verifyChain({ ...rome, oca: naples.oca }), 'pek-by-oca', 'bad-signature');
  // The PDH of the other platform.
  expectChainError(t, () => verifyChain({ ...rome, pdh: naples.pdh }), 'pdh-by-pek', 'bad-signature');
  // Child and parent exchanged.
  expectChainError(t, () => verifyChain({ ...rome, pek: rome.pdh, pdh: rome.pek }), 'pek-by-cek', 'wrong-usage');
  expectChainError(t, () => verifyChain({ ...rome, oca: rome.pek }), 'oca-self', 'wrong-usage');
  // The owner API with the wrong generation pinned.
  expectChainError(t, () => ownerVerifyChain({ ...platformCerts('rome'), generation: 'milan' }), 'cek-by-ask', 'bad-signature');
  expectChainError(t, () => ownerVerifyChain({ ...platformCerts('naples'), generation: 'rome' }), 'cek-by-ask', 'no-matching-signature');
  // Mixed platforms through the owner API: the error is the real one, not "another generation".
  expectChainError(t, () => ownerVerifyChain({ ...platformCerts('rome'), pdh: naples.pdh }), 'pdh-by-pek', 'bad-signature');
});

test('a PDH signed by the wrong key fails', (t) => {
  const rome = chainOf('rome');
  const pdh = parseSevCert(rome.pdh);
  const unsigned = { ...pdh, sig1: { usage: SevUsage.INVALID, algo: 0, sig: Buffer.alloc(512) } };
  const other = generateP384().privateKey;
  // Signed by some key claiming to be the PEK.
  expectChainError(
    t,
    () => verifyChain({ ...rome, pdh: serializeSevCert(signSevCert(unsigned, other, SevUsage.PEK)) }),
    'pdh-by-pek',
    'bad-signature',
  );
  // Signed by an OCA instead of the PEK: no slot names the PEK.
  expectChainError(
    t,
    () => verifyChain({ ...rome, pdh: serializeSevCert(signSevCert(unsigned, other, SevUsage.OCA)) }),
    'pdh-by-pek',
    'no-matching-signature',
  );
  // Not signed at all.
  expectChainError(t, () => verifyChain({ ...rome, pdh: serializeSevCert(unsigned) }), 'pdh-by-pek', 'no-matching-signature');
});

// ---- tampered bytes ------------------------------------------------------------------------------

test('tampered certificate bytes fail with the reason of their class', (t) => {
  const rome = chainOf('rome');
  const naplesPek = platformCerts('naples').pek;
  const cases: Array<[string, Partial<ChainInput>, ChainLink, CertFailureReason]> = [
    // key
    ['PEK Qx byte', { pek: flip(rome.pek, 0x14 + 5) }, 'pek-by-cek', 'invalid-public-key'],
    ['PEK Qy byte', { pek: flip(rome.pek, 0x5c + 40) }, 'pek-by-cek', 'invalid-public-key'],
    ['PEK curve', { pek: withU32(rome.pek, 0x10, 1) }, 'pek-by-cek', 'invalid-public-key'],
    ['PEK coordinate padding', { pek: flip(rome.pek, 0x14 + 60) }, 'pek-by-cek', 'invalid-public-key'],
    [
      'PEK key replaced by another valid point',
      {
        pek: (() => {
          const b = Buffer.from(rome.pek);
          naplesPek.copy(b, 0x10, 0x10, 0x414);
          return b;
        })(),
      },
      'pek-by-cek',
      'bad-signature',
    ],
    ['PDH Qx byte', { pdh: flip(rome.pdh, 0x14) }, 'pdh-by-pek', 'invalid-public-key'],
    ['CEK Qy byte', { cek: flip(rome.cek, 0x5c) }, 'cek-by-ask', 'invalid-public-key'],
    // usage
    ['PDH usage → PEK', { pdh: withU32(rome.pdh, 0x08, SevUsage.PEK) }, 'pdh-by-pek', 'wrong-usage'],
    ['CEK usage → OCA', { cek: withU32(rome.cek, 0x08, SevUsage.OCA) }, 'cek-by-ask', 'wrong-usage'],
    ['PEK algo → ECDH', { pek: withU32(rome.pek, 0x0c, SevAlgo.ECDH_SHA256) }, 'pek-by-cek', 'invalid-algorithm'],
    // version
    ['PEK version', { pek: withU32(rome.pek, 0, 2) }, 'pek-by-cek', 'bad-version'],
    ['OCA version', { oca: withU32(rome.oca, 0, 0) }, 'oca-self', 'bad-version'],
    ['PDH version', { pdh: withU32(rome.pdh, 0, 3) }, 'pdh-by-pek', 'bad-version'],
    // bytes only the signature protects
    ['PEK api minor', { pek: flip(rome.pek, 5) }, 'pek-by-cek', 'bad-signature'],
    ['PDH reserved', { pdh: flip(rome.pdh, 6) }, 'pdh-by-pek', 'bad-signature'],
    ['PDH key padding', { pdh: flip(rome.pdh, 0x300) }, 'pdh-by-pek', 'bad-signature'],
    // signature
    ['CEK signature (ASK, RSA)', { cek: flip(rome.cek, SIG1 + 10) }, 'cek-by-ask', 'bad-signature'],
    ['PEK signature by CEK (slot 2) r', { pek: flip(rome.pek, SIG2 + 3) }, 'pek-by-cek', 'bad-signature'],
    ['PEK signature by CEK (slot 2) s', { pek: flip(rome.pek, SIG2 + 72 + 3) }, 'pek-by-cek', 'bad-signature'],
    ['PEK signature by OCA (slot 1)', { pek: flip(rome.pek, SIG1 + 20) }, 'pek-by-oca', 'bad-signature'],
    ['OCA self-signature', { oca: flip(rome.oca, SIG1 + 100) }, 'oca-self', 'bad-signature'],
    ['PDH signature', { pdh: flip(rome.pdh, SIG1) }, 'pdh-by-pek', 'bad-signature'],
    ['PEK signature r wider than 48 bytes', { pek: flip(rome.pek, SIG2 + 50) }, 'pek-by-cek', 'bad-signature'],
    // signature slot usage / algo
    [
      'PEK slot 2 usage → INVALID (algo still set)',
      { pek: withU32(rome.pek, 0x61c, SevUsage.INVALID) },
      'pek-by-cek',
      'malformed-signature-slot',
    ],
    ['PEK slot 2 algo → ECDSA_SHA384', { pek: withU32(rome.pek, 0x620, SevAlgo.ECDSA_SHA384) }, 'pek-by-cek', 'no-matching-signature'],
    ['PDH slot 1 usage → OCA', { pdh: withU32(rome.pdh, 0x414, SevUsage.OCA) }, 'pdh-by-pek', 'no-matching-signature'],
    ['CEK slot 1 algo → RSA_SHA256', { cek: withU32(rome.cek, 0x418, SevAlgo.RSA_SHA256) }, 'cek-by-ask', 'no-matching-signature'],
  ];
  for (const [name, change, link, reason] of cases) {
    expectChainError(t, () => verifyChain({ ...rome, ...change }), link, reason, name);
  }
  // The AMD part through the chain.
  expectChainError(t, () => verifyChain({ ...rome, ark: flip(rome.ark, 0x100) }), 'ark-self', 'bad-signature');
  expectChainError(t, () => verifyChain({ ...rome, ark: flip(rome.ark, 0x14) }), 'ark-self', 'key-id-mismatch');
  expectChainError(t, () => verifyChain({ ...rome, ask: flip(rome.ask, 0x200) }), 'ask-by-ark', 'bad-signature');
  expectChainError(t, () => verifyChain({ ...rome, ask: withU32(rome.ask, 0x24, 0) }), 'ask-by-ark', 'wrong-usage');
});

test('every sampled body byte of every platform certificate is protected', (t) => {
  const rome = chainOf('rome');
  let n = 0;
  for (const which of ['cek', 'oca', 'pek', 'pdh'] as const) {
    for (let off = 0; off < 0x414; off += 29) {
      t.throws(() => verifyChain({ ...rome, [which]: flip(rome[which], off, 0x80) }), { instanceOf: SevChainError }, `${which}@${off}`);
      n++;
    }
  }
  t.true(n > 140);
});

test('single-certificate verification follows the firmware order (signature first, then body)', (t) => {
  const c = platformCerts('rome');
  const pek = parseSevCert(c.pek);
  const cases: Array<[Buffer, CertFailureReason, 'BAD_SIGNATURE' | 'INVALID_CERTIFICATE']> = [
    [withU32(c.pdh, 0, 2), 'bad-signature', 'BAD_SIGNATURE'],
    [withU32(c.pdh, 0x08, SevUsage.OCA), 'bad-signature', 'BAD_SIGNATURE'],
    [withU32(c.pdh, 0x418, 0), 'malformed-signature-slot', 'BAD_SIGNATURE'],
    [withU32(c.pdh, 0x414, SevUsage.CEK), 'no-matching-signature', 'INVALID_CERTIFICATE'],
  ];
  for (const [bytes, reason] of cases) {
    const r = verifySevCert(bytes, pek);
    t.false(r.ok);
    if (!r.ok) t.is(r.reason, reason);
  }
  // A body problem that the signature covers too is reported as the body problem only if the
  // signature verifies: re-sign a version-2 PDH with a fresh key to see the body check.
  const k = generateP384().privateKey;
  const pdh2 = signSevCert(
    { ...parseSevCert(c.pdh), version: 2, sig1: { usage: SevUsage.INVALID, algo: 0, sig: Buffer.alloc(512) } },
    k,
    SevUsage.PEK,
  );
  const signer = { usage: SevUsage.PEK, algo: SevAlgo.ECDSA_SHA256, publicKey: k };
  const r = verifySevCert(pdh2, signer);
  t.false(r.ok);
  if (!r.ok) t.is(r.reason, 'bad-version');
  t.deepEqual(verifySevCert(pdh2, signer, { checkBody: false }), { ok: true, slot: 1 });
  // Signer whose own key is not a valid point.
  const badSigner = parseSevCert(flip(c.pek, 0x14 + 5));
  const r2 = verifySevCert(c.pdh, badSigner);
  t.false(r2.ok);
  if (!r2.ok) t.is(r2.reason, 'invalid-signer-key');
});

// ---- signing and minting ------------------------------------------------------------------------

test('signSevCert: slot choice, hash by algorithm, r/s little-endian', (t) => {
  const signer = generateP384().privateKey;
  const child = createSevCert({ usage: SevUsage.PEK, publicKey: generateP384().publicKey, apiMajor: 1, apiMinor: 55 });
  t.is(child.pubKeyAlgo, SevAlgo.ECDSA_SHA256);
  const s1 = signSevCert(child, signer, SevUsage.OCA);
  t.deepEqual([s1.sig1.usage, s1.sig1.algo, s1.sig2.usage], [SevUsage.OCA, SevAlgo.ECDSA_SHA256, SevUsage.INVALID]);
  const s2 = signSevCert(s1, signer, SevUsage.CEK, { algo: SevAlgo.ECDSA_SHA384 });
  t.deepEqual([s2.sig2.usage, s2.sig2.algo], [SevUsage.CEK, SevAlgo.ECDSA_SHA384]);
  t.throws(() => signSevCert(s2, signer, SevUsage.PDH), { code: 'ERR_INVALID_ARG_VALUE' });

  // Independent check of slot 2: ECDSA P-384 over SHA-384(body), r ‖ s little-endian 72-byte fields.
  const body = serializeSevCert(s2).subarray(0, 0x414);
  const raw = serializeSevCert(s2).subarray(SIG2, SIG2 + 144);
  const rBe = Buffer.from(raw.subarray(0, 48)).reverse();
  const sBe = Buffer.from(raw.subarray(72, 120)).reverse();
  t.true(raw.subarray(48, 72).equals(Buffer.alloc(24)) && raw.subarray(120, 144).equals(Buffer.alloc(24)));
  t.true(nodeVerify('sha384', body, { key: signer, dsaEncoding: 'ieee-p1363' }, Buffer.concat([rBe, sBe])));
  t.false(nodeVerify('sha256', body, { key: signer, dsaEncoding: 'ieee-p1363' }, Buffer.concat([rBe, sBe])));

  t.deepEqual(verifySevCert(s2, { usage: SevUsage.CEK, algo: SevAlgo.ECDSA_SHA384, publicKey: signer }), { ok: true, slot: 2 });
  t.deepEqual(verifySevCert(s2, { usage: SevUsage.OCA, algo: SevAlgo.ECDSA_SHA256, publicKey: signer }), { ok: true, slot: 1 });
  const wrongHash = verifySevCert(s2, { usage: SevUsage.CEK, algo: SevAlgo.ECDSA_SHA256, publicKey: signer });
  t.false(wrongHash.ok);
  // Minted certificates round-trip too.
  t.true(serializeSevCert(parseSevCert(serializeSevCert(s2))).equals(serializeSevCert(s2)));
});

test('a minted 4096-bit chain verifies with the same code as AMD chains', async (t) => {
  const { root, platform } = await mintChain();
  const chain = { ark: root.ark, ask: root.ask, cek: platform.cek, oca: platform.oca, pek: platform.pek, pdh: platform.pdh };
  const v = verifyChain(chain, { trustedArks: [root.ark] });
  t.is(v.generation, undefined);
  t.is(root.ark.modulusBits, 4096);
  t.is(platform.cek.sig1.algo, SevAlgo.RSA_SHA384);
  t.is(serializeAmdCert(root.ask).length, 0x640);
  // Bytes round-trip and still verify.
  const bytes = {
    ark: serializeAmdCert(root.ark),
    ask: serializeAmdCert(root.ask),
    cek: serializeSevCert(platform.cek),
    oca: serializeSevCert(platform.oca),
    pek: serializeSevCert(platform.pek),
    pdh: serializeSevCert(platform.pdh),
  };
  t.notThrows(() => verifyChain(bytes));
  // Pinned to AMD's roots, a minted root is untrusted …
  expectChainError(t, () => verifyChain(bytes, { trustedArks: [builtinRoots('rome').ark] }), 'ark-self', 'untrusted-root');
  expectChainError(t, () => ownerVerifyChain({ ...bytes }), 'ark-self', 'untrusted-root');
  // … and the owner finds no built-in ASK that signed its CEK.
  expectChainError(
    t,
    () => ownerVerifyChain({ cek: bytes.cek, oca: bytes.oca, pek: bytes.pek, pdh: bytes.pdh }),
    'cek-by-ask',
    'bad-signature',
  );
  // Unless the caller trusts it.
  t.notThrows(() =>
    ownerVerifyChain({ cek: bytes.cek, oca: bytes.oca, pek: bytes.pek, pdh: bytes.pdh, extraRoots: [{ ark: bytes.ark, ask: bytes.ask }] }),
  );
  // Minted and real do not mix.
  expectChainError(t, () => verifyChain({ ...bytes, pek: platformCerts('rome').pek }), 'pek-by-cek', 'bad-signature');
  // Another platform under the same root.
  const other = mintPlatformChain({ ask: root.ask, askKey: root.askKey });
  t.notThrows(() => verifyChain({ ...bytes, cek: other.cek, oca: other.oca, pek: other.pek, pdh: other.pdh }));
  expectChainError(t, () => verifyChain({ ...bytes, pek: other.pek }), 'pek-by-cek', 'bad-signature');
});

test('a minted Naples-like (2048-bit) root signs CEKs with RSA_SHA256', async (t) => {
  const root = await mintAmdRoot({ bits: 2048 });
  t.is(serializeAmdCert(root.ark).length, 0x340);
  const p = mintPlatformChain({ ask: root.ask, askKey: root.askKey, apiMajor: 0, apiMinor: 16 });
  t.is(p.cek.sig1.algo, SevAlgo.RSA_SHA256);
  t.deepEqual([p.pek.apiMajor, p.pek.apiMinor, p.cek.apiMinor], [0, 16, 14]);
  t.notThrows(() => verifyChain({ ark: root.ark, ask: root.ask, ...p }));
  const ok = verifySevCert(p.cek, root.ask);
  t.true(ok.ok);
});

test('the CEK derived from a chip-unique key is deterministic (§7.3)', (t) => {
  const cuk = Buffer.alloc(32, 7);
  const a = p384PointOf(deriveCekKey(cuk));
  const b = p384PointOf(deriveCekKey(Buffer.from(cuk)));
  const c = p384PointOf(deriveCekKey(Buffer.alloc(32, 8)));
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  // d = (LE(KDF(SHA-256(cuk), "sev-chip-endorsement-key", -, 448)) mod (n-1)) + 1, recomputed here.
  const seed = createHash('sha256').update(cuk).digest();
  const fixed = Buffer.concat([Buffer.from('sev-chip-endorsement-key'), Buffer.from([0]), Buffer.from([0xc0, 0x01, 0, 0])]);
  const k1 = createHmac('sha256', seed)
    .update(Buffer.from([1, 0, 0, 0]))
    .update(fixed)
    .digest();
  const k2 = createHmac('sha256', seed)
    .update(Buffer.from([2, 0, 0, 0]))
    .update(fixed)
    .digest();
  const rdata = Buffer.concat([k1, k2]).subarray(0, 56);
  const n = P384.n;
  const d = (BigInt('0x' + Buffer.from(rdata).reverse().toString('hex')) % (n - 1n)) + 1n;
  const jwk = deriveCekKey(cuk).export({ format: 'jwk' });
  t.is(BigInt('0x' + Buffer.from(jwk.d!, 'base64url').toString('hex')), d);
});

test('GODH checks: what LAUNCH_START looks at, and only that', (t) => {
  const k = generateP384();
  const godh = createSevCert({ usage: SevUsage.PDH, publicKey: k.publicKey });
  t.deepEqual(checkGodhCert(godh), { ok: true, slot: 0 });
  t.deepEqual(checkSevCertBody(godh), { ok: true, slot: 0 });
  const bytes = serializeSevCert(godh);
  const cases: Array<[Buffer, CertFailureReason]> = [
    [withU32(bytes, 0, 0), 'bad-version'],
    [withU32(bytes, 0x08, SevUsage.PEK), 'wrong-usage'],
    [withU32(bytes, 0x0c, SevAlgo.ECDH_SHA384), 'invalid-algorithm'],
    [withU32(bytes, 0x10, 1), 'invalid-public-key'],
    [flip(bytes, 0x14 + 3), 'invalid-public-key'],
  ];
  for (const [b, reason] of cases) {
    const r = checkGodhCert(parseSevCert(b));
    t.false(r.ok);
    if (!r.ok) t.is(r.reason, reason);
  }
  const wide = checkGodhCert(parseSevCert(flip(bytes, 0x5c + 60)));
  t.false(wide.ok);
  if (!wide.ok) t.regex(wide.detail, /wider than 48 bytes/);
  // Garbage in a signature slot does not matter to LAUNCH_START.
  t.true(checkGodhCert(parseSevCert(flip(bytes, SIG1 + 9))).ok);
  const err = new SevCertError('invalid-public-key', 'x');
  t.is(err.firmwareStatus, 'INVALID_CERTIFICATE');
});

/** Session wrap/unwrap, measurement, LAUNCH_SECRET, transport packets, tables, attestation (§: docs/sev-reference.md). */
import test from 'ava';
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import {
  ChannelContext,
  LaunchDigest,
  SevCertError,
  SevMacError,
  SevUsage,
  ATTESTATION_REPORT_SIZE,
  aes128Ctr,
  buildKernelHashesTable,
  sealSecret as buildSecret,
  buildSecretTable,
  computeLaunchMeasurement,
  createSevCert,
  decodePolicy,
  ecdhP384,
  encodePolicy,
  generateP384,
  guidFromBytes,
  guidToBytes,
  kdfSp800108,
  launchDigest,
  measurementMessage,
  openLaunchSession,
  openSecret,
  openTransportPacket,
  parseAttestationReport,
  parsePacketHeader,
  parseSecretTable,
  parseSession,
  policyAllowsApi,
  sealTransportPacket,
  serializeAttestationReport,
  serializeSession,
  serializeSevCert,
  signAttestationReport,
  unwrapSession,
  verifyAttestationReport,
  wrapSession,
  LUKS_KEY_GUID,
  SECRET_TABLE_GUID,
  SevFormatError,
  mintPek,
  mintOca,
} from '../../lib/crypto/index.js';
import { flip, hex } from '../helpers/cert-fixtures.js';

function macError(mac: 'wrap' | 'policy') {
  return { instanceOf: SevMacError, code: 'ERR_SEV_BAD_MAC', message: mac === 'wrap' ? /WRAP_MAC/ : /POLICY_MAC/ };
}

// ---- KDF and AES-CTR, checked against independent constructions ----------------------------------

test('KDF with more than one block: K(1) ‖ K(2), counter and L little-endian', (t) => {
  const key = randomBytes(48);
  const ctx = randomBytes(16);
  const fixed = Buffer.concat([Buffer.from('some-label'), Buffer.from([0]), ctx, Buffer.from([0x40, 0x01, 0, 0])]); // L = 320
  const k1 = createHmac('sha256', key)
    .update(Buffer.from([1, 0, 0, 0]))
    .update(fixed)
    .digest();
  const k2 = createHmac('sha256', key)
    .update(Buffer.from([2, 0, 0, 0]))
    .update(fixed)
    .digest();
  t.true(kdfSp800108(key, 'some-label', ctx, 320).equals(Buffer.concat([k1, k2]).subarray(0, 40)));
  t.throws(() => kdfSp800108(key, 'x', ctx, 12), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' });
});

test('AES-128-CTR counts the whole 16-byte block big-endian (carry across the IV)', (t) => {
  const key = randomBytes(16);
  const iv = Buffer.alloc(16, 0xff); // next block's counter wraps to all zeros
  const data = randomBytes(40);
  const ecb = (block: Buffer): Buffer => {
    const c = createCipheriv('aes-128-ecb', key, null);
    c.setAutoPadding(false);
    return c.update(block);
  };
  const ks = Buffer.concat([ecb(iv), ecb(Buffer.alloc(16)), ecb(Buffer.from('00000000000000000000000000000001', 'hex'))]);
  const expected = Buffer.from(data.map((b, i) => b ^ ks[i]!));
  t.true(aes128Ctr(key, iv, data).equals(expected));
  t.true(aes128Ctr(key, iv, expected).equals(data));
});

// ---- session ------------------------------------------------------------------------------------

function platformAndOwner() {
  const pdh = generateP384();
  const godh = generateP384();
  const zOwner = ecdhP384(godh.privateKey, pdh.publicKey);
  const zPlatform = ecdhP384(pdh.privateKey, godh.publicKey);
  return { pdh, godh, zOwner, zPlatform };
}

test('ECDH: both sides get the same 48-byte Z', (t) => {
  const { zOwner, zPlatform } = platformAndOwner();
  t.is(zOwner.length, 48);
  t.true(zOwner.equals(zPlatform));
});

test('session wrap → unwrap round trip with real ECDH', (t) => {
  const { godh, pdh, zOwner } = platformAndOwner();
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const policy = 0x00050001;
  const blob = serializeSession(wrapSession({ sharedSecret: zOwner, tek, tik, policy }));
  t.is(blob.length, 128);
  const got = unwrapSession({ session: blob, sharedSecret: ecdhP384(pdh.privateKey, godh.publicKey), policy });
  t.true(got.tek.equals(tek));
  t.true(got.tik.equals(tik));
  // And through the firmware-side entry point, with the GODH as a certificate.
  const godhCert = serializeSevCert(createSevCert({ usage: SevUsage.PDH, publicKey: godh.publicKey }));
  const fw = openLaunchSession({ session: blob, godhCert, pdhPrivateKey: pdh.privateKey, policy });
  t.true(fw.tek.equals(tek) && fw.tik.equals(tik));
  // The wrapped keys really are AES-128-CTR(KEK, IV, TEK ‖ TIK).
  const s = parseSession(blob);
  t.true(aes128Ctr(got.keys.kek, s.wrapIv, s.wrapTk).equals(Buffer.concat([tek, tik])));
  t.true(s.wrapMac.equals(createHmac('sha256', got.keys.kik).update(s.wrapTk).digest()));
});

test('session failures: each MAC fails with its own reason', (t) => {
  const { zOwner, zPlatform } = platformAndOwner();
  const policy = 1;
  const blob = serializeSession(wrapSession({ sharedSecret: zOwner, tek: randomBytes(16), tik: randomBytes(16), policy }));
  const cases: Array<[string, Buffer, number, Buffer, 'wrap' | 'policy']> = [
    ['tampered WRAP_MAC', flip(blob, 0x40 + 7), policy, zPlatform, 'wrap'],
    ['tampered WRAP_TK', flip(blob, 0x10 + 31), policy, zPlatform, 'wrap'],
    ['tampered NONCE', flip(blob, 0x00), policy, zPlatform, 'wrap'],
    ['wrong shared secret (other PDH)', blob, policy, platformAndOwner().zPlatform, 'wrap'],
    ['tampered POLICY_MAC', flip(blob, 0x60 + 31), policy, zPlatform, 'policy'],
    ['other policy at LAUNCH_START', blob, 3, zPlatform, 'policy'],
    // The IV is not MAC'd: a changed IV unwraps other keys, which then fail the policy MAC.
    ['tampered WRAP_IV', flip(blob, 0x30 + 15), policy, zPlatform, 'policy'],
  ];
  for (const [name, session, pol, z, mac] of cases) {
    const e = t.throws(() => unwrapSession({ session, sharedSecret: z, policy: pol }), macError(mac), name);
    t.is((e as unknown as SevMacError | undefined)?.mac, mac, name);
  }
  t.throws(() => unwrapSession({ session: blob.subarray(0, 127), sharedSecret: zPlatform, policy }), { instanceOf: SevFormatError });
});

test('openLaunchSession: GODH problems are certificate errors, not MAC errors', (t) => {
  const { godh, pdh, zOwner } = platformAndOwner();
  const blob = serializeSession(wrapSession({ sharedSecret: zOwner, tek: randomBytes(16), tik: randomBytes(16), policy: 0 }));
  const cert = serializeSevCert(createSevCert({ usage: SevUsage.PDH, publicKey: godh.publicKey }));
  const bad = flip(cert, 0x14 + 1);
  const e = t.throws(() => openLaunchSession({ session: blob, godhCert: bad, pdhPrivateKey: pdh.privateKey, policy: 0 }), {
    instanceOf: SevCertError,
  });
  t.is(e?.firmwareStatus, 'INVALID_CERTIFICATE');
  t.is(e?.reason, 'invalid-public-key');
  // A valid but different GODH key: the MACs catch it.
  const other = serializeSevCert(createSevCert({ usage: SevUsage.PDH, publicKey: generateP384().publicKey }));
  t.throws(() => openLaunchSession({ session: blob, godhCert: other, pdhPrivateKey: pdh.privateKey, policy: 0 }), macError('wrap'));
});

// ---- measurement ----------------------------------------------------------------------------------

test('launch digest streams: chunking does not matter, order does', (t) => {
  const a = randomBytes(4096);
  const b = randomBytes(100);
  const whole = createHash('sha256')
    .update(Buffer.concat([a, b]))
    .digest();
  t.true(launchDigest([a, b]).equals(whole));
  const d = new LaunchDigest();
  for (let i = 0; i < a.length; i += 1000) d.update(a.subarray(i, i + 1000));
  d.update(b.subarray(0, 1)).update(b.subarray(1));
  t.true(d.peek().equals(whole));
  t.true(d.digest().equals(whole));
  t.true(d.digest().equals(whole));
  t.throws(() => d.update(a));
  t.false(launchDigest([b, a]).equals(whole));
});

test('measurement message layout is the 56 bytes of §4.3', (t) => {
  const digest = randomBytes(32);
  const mnonce = randomBytes(16);
  const m = measurementMessage({ apiMajor: 1, apiMinor: 55, build: 21, policy: 0x12345678, digest, mnonce });
  t.is(m.length, 56);
  t.deepEqual([...m.subarray(0, 8)], [0x04, 1, 55, 21, 0x78, 0x56, 0x34, 0x12]);
  t.true(m.subarray(8, 40).equals(digest) && m.subarray(40).equals(mnonce));
  const tik = randomBytes(16);
  t.true(
    computeLaunchMeasurement({ apiMajor: 1, apiMinor: 55, build: 21, policy: 0x12345678, digest, mnonce, tik }).equals(
      createHmac('sha256', tik).update(m).digest(),
    ),
  );
});

// ---- LAUNCH_SECRET -------------------------------------------------------------------------------

test('secret round trip, and the MAC is the one of §5', (t) => {
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const measurement = randomBytes(32);
  const plaintext = randomBytes(64);
  const iv = randomBytes(16);
  const p = buildSecret({ tek, tik, measurement, plaintext, iv });
  t.is(p.headerBytes.length, 52);
  t.deepEqual(parsePacketHeader(p.headerBytes), p.header);
  t.is(p.headerBytes.readUInt32LE(0), 0);
  t.true(p.headerBytes.subarray(4, 20).equals(iv));
  const mac = createHmac('sha256', tik)
    .update(Buffer.from([0x01, 0, 0, 0, 0]))
    .update(iv)
    .update(Buffer.from([64, 0, 0, 0, 64, 0, 0, 0]))
    .update(p.trans)
    .update(measurement)
    .digest();
  t.true(p.header.mac.equals(mac));
  t.true(p.trans.equals(aes128Ctr(tek, iv, plaintext)));
  t.true(openSecret({ tek, tik, measurement, header: p.headerBytes, trans: p.trans }).equals(plaintext));
});

test('secret failures: wrong key, wrong measurement, tampered header or ciphertext', (t) => {
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const measurement = randomBytes(32);
  const plaintext = randomBytes(48);
  const p = buildSecret({ tek, tik, measurement, plaintext });
  const base: { tek: Uint8Array; tik: Uint8Array; measurement: Uint8Array; header: Uint8Array; trans: Uint8Array } = {
    tek,
    tik,
    measurement,
    header: p.headerBytes,
    trans: p.trans,
  };
  const cases: Array<[string, Partial<typeof base> & { guestLength?: number }]> = [
    ['wrong TIK', { tik: randomBytes(16) }],
    ['wrong measurement', { measurement: flip(measurement, 0) }],
    ['tampered flags', { header: flip(p.headerBytes, 0) }],
    ['tampered IV', { header: flip(p.headerBytes, 4 + 15) }],
    ['tampered MAC', { header: flip(p.headerBytes, 51) }],
    ['tampered ciphertext', { trans: flip(p.trans, 47) }],
    ['other guest length', { guestLength: 32 }],
  ];
  for (const [name, change] of cases) {
    const e = t.throws(() => openSecret({ ...base, ...change }), { instanceOf: SevMacError }, name);
    t.is(e?.mac, 'secret', name);
  }
  // A wrong TEK passes the MAC (it is keyed with TIK) but yields other bytes.
  t.false(openSecret({ ...base, tek: randomBytes(16) }).equals(plaintext));
});

// ---- transport -----------------------------------------------------------------------------------

test('transport packets: round trip, context byte, fresh IV per packet', (t) => {
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const page = randomBytes(4096);
  const a = sealTransportPacket({ tek, tik, plaintext: page });
  const b = sealTransportPacket({ tek, tik, plaintext: page });
  t.false(a.header.iv.equals(b.header.iv));
  t.true(openTransportPacket({ tek, tik, header: a.headerBytes, trans: a.trans }).equals(page));
  const mac = createHmac('sha256', tik)
    .update(Buffer.from([0x02, 0, 0, 0, 0]))
    .update(a.header.iv)
    .update(Buffer.from([0, 0x10, 0, 0, 0, 0x10, 0, 0]))
    .update(a.trans)
    .digest();
  t.true(a.header.mac.equals(mac));
  const vmsa = sealTransportPacket({ tek, tik, plaintext: page, context: ChannelContext.VMSA });
  t.true(openTransportPacket({ tek, tik, header: vmsa.header, trans: vmsa.trans, context: ChannelContext.VMSA }).equals(page));
  const e = t.throws(() => openTransportPacket({ tek, tik, header: vmsa.header, trans: vmsa.trans }), { instanceOf: SevMacError });
  t.is(e?.mac, 'transport');
  t.throws(() => openTransportPacket({ tek, tik, header: a.header, trans: flip(a.trans, 100) }), { instanceOf: SevMacError });
});

// ---- tables, GUIDs, policy ----------------------------------------------------------------------

test('GUIDs are stored in EFI (bytes_le) order', (t) => {
  t.is(guidToBytes(SECRET_TABLE_GUID).toString('hex'), '42f5741edd71664d963eef4287ff173b');
  t.is(guidFromBytes(hex('42f5741edd71664d963eef4287ff173b')), SECRET_TABLE_GUID);
  t.throws(() => guidToBytes('not-a-guid'), { code: 'ERR_INVALID_ARG_VALUE' });
});

test('secret table: layout, padding, round trip', (t) => {
  const key = Buffer.from('my-luks-passphrase');
  const other = randomBytes(33);
  const tbl = buildSecretTable([
    { guid: LUKS_KEY_GUID, data: key },
    { guid: 'e6f5a162-d67f-4750-a67c-5d065f2a9910', data: other },
  ]);
  const total = 20 + (20 + key.length) + (20 + other.length);
  t.is(tbl.length % 16, 0);
  t.is(tbl.length, Math.ceil(total / 16) * 16);
  t.is(tbl.readUInt32LE(16), total);
  t.true(tbl.subarray(20, 36).equals(guidToBytes(LUKS_KEY_GUID)));
  t.is(tbl.readUInt32LE(36), 20 + key.length);
  t.true(tbl.subarray(40, 40 + key.length).equals(key));
  t.true(tbl.subarray(total).equals(Buffer.alloc(tbl.length - total)));
  const back = parseSecretTable(tbl);
  t.is(back.length, 2);
  t.is(back[0]!.guid, LUKS_KEY_GUID);
  t.true(Buffer.from(back[0]!.data).equals(key));
  t.true(Buffer.from(back[1]!.data).equals(other));
  t.throws(() => parseSecretTable(flip(tbl, 0)), { instanceOf: SevFormatError });
  t.throws(() => parseSecretTable(tbl.subarray(0, 30)), { instanceOf: SevFormatError });
  t.throws(
    () =>
      buildSecretTable([
        { guid: LUKS_KEY_GUID, data: key },
        { guid: LUKS_KEY_GUID.toUpperCase(), data: key },
      ]),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
});

test('kernel hashes table: 168 bytes padded to 176 (§4.1)', (t) => {
  const kernel = randomBytes(1000);
  const tbl = buildKernelHashesTable({ kernel, cmdline: 'console=ttyS0' });
  t.is(tbl.length, 176);
  t.is(tbl.readUInt16LE(16), 168);
  t.is(guidFromBytes(tbl.subarray(0, 16)), '9438d606-4f22-4cc9-b479-a793d411fd21');
  t.is(tbl.readUInt16LE(18 + 16), 50);
  t.true(tbl.subarray(18 + 18, 18 + 50).equals(createHash('sha256').update('console=ttyS0\0').digest()));
  t.true(tbl.subarray(68 + 18, 68 + 50).equals(createHash('sha256').digest())); // empty initrd
  t.true(tbl.subarray(118 + 18, 118 + 50).equals(createHash('sha256').update(kernel).digest()));
  const empty = buildKernelHashesTable({ kernel });
  t.true(
    empty.subarray(18 + 18, 18 + 50).equals(
      createHash('sha256')
        .update(Buffer.from([0]))
        .digest(),
    ),
  );
});

test('policy encode/decode and the API minimum', (t) => {
  const p = encodePolicy({ nodbg: true, noks: true, es: true, apiMajor: 1, apiMinor: 2 });
  t.is(p, 0x02010007);
  t.like(decodePolicy(p), { nodbg: true, noks: true, es: true, nosend: false, apiMajor: 1, apiMinor: 2, reserved: 0 });
  t.is(decodePolicy(0x40).reserved, 0x40);
  t.true(policyAllowsApi(p, 1, 2));
  t.true(policyAllowsApi(p, 2, 0));
  t.false(policyAllowsApi(p, 1, 1));
  t.false(policyAllowsApi(p, 0, 99));
});

// ---- attestation report -------------------------------------------------------------------------

test('attestation report: PEK signature over bytes 0..0x33', (t) => {
  const oca = generateP384().privateKey;
  const pekKey = generateP384().privateKey;
  const pek = mintPek({ pekKey, ocaKey: oca });
  t.true(mintOca({ ocaKey: oca }).sig1.usage === SevUsage.OCA);
  const r = signAttestationReport({ mnonce: randomBytes(16), launchDigest: randomBytes(32), policy: 5 }, pekKey);
  const bytes = serializeAttestationReport(r);
  t.is(bytes.length, ATTESTATION_REPORT_SIZE);
  t.deepEqual(parseAttestationReport(bytes), r);
  t.true(verifyAttestationReport(bytes, pek));
  t.false(verifyAttestationReport(flip(bytes, 0x10), pek)); // digest
  t.false(verifyAttestationReport(flip(bytes, 0x30), pek)); // policy
  t.false(verifyAttestationReport(flip(bytes, 0x40), pek)); // signature
  t.true(verifyAttestationReport(flip(bytes, 0x3c), pek)); // reserved is outside the signed bytes
  t.false(verifyAttestationReport(bytes, mintPek({ pekKey: generateP384().privateKey, ocaKey: oca })));
});

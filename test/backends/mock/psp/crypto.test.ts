/**
 * Mock PSP against the guest-owner code (lib/owner): sessions, measurement, secrets, attestation,
 * certificate chains; the public vectors of docs/sev-reference.md §10 (bare § below) through the firmware path.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import {
  LUKS_KEY_GUID,
  buildSecret,
  createSession,
  launchDigest,
  parseLaunchMeasurement,
  parseSecretTable,
  verifyAttestationReport,
  verifyChain,
  verifyMeasurement,
} from '../../../../lib/owner/index.js';
import {
  SevAlgo,
  SevUsage,
  sealSecret,
  createSevCert,
  parseAttestationReport,
  parseSevCert,
  serializeSevCert,
  verifySevCert,
} from '../../../../lib/crypto/index.js';
import type { SevCertificate } from '../../../../lib/crypto/index.js';
import { CiphertextMemory, GENOA, MILAN, MockFirmware, NAPLES, ROME } from '../../../../lib/backends/mock/psp/index.js';
import { SEV_POLICY } from '../../../../lib/uapi/constants.js';
import { GSTATE, SEV_RET, advance, expectStatus, launch, owner, range, ready, root, scriptedRandom } from './fixtures.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const FW = { apiMajor: ROME.apiMajor, apiMinor: ROME.apiMinor, build: ROME.build };

function exported(fw: MockFirmware): { pdh: Buffer; pek: Buffer; oca: Buffer; cek: Buffer } {
  const r = fw.pdhCertExport(0x824, 0x186c);
  const c = Buffer.from(r.certs!);
  return { pdh: Buffer.from(r.pdh!), pek: c.subarray(0, 0x824), oca: c.subarray(0x824, 0x1048), cek: c.subarray(0x1048) };
}

test('an owner session is accepted; LAUNCH_MEASURE verifies with the owner TIK and the digest of the plaintext', (t) => {
  const fw = ready();
  const policy = SEV_POLICY.NODBG | SEV_POLICY.NOKS;
  const g = launch(fw, policy);
  const image = randomBytes(3 * 4096 + 48);
  const mem = Buffer.from(image);
  // Three updates of different sizes: chunking does not matter (§4.1).
  for (const [off, len] of [
    [0, 4096],
    [4096, 8192],
    [12288, 48],
  ] as const) {
    t.is(fw.launchUpdateData(g.handle, range(0x100000n + BigInt(off), mem.subarray(off, off + len))).status, 0);
  }
  const m = fw.launchMeasure(g.handle, 48);
  t.like(m, { status: 0, length: 48 });
  const expected = { ...FW, policy, digest: launchDigest([image]), tik: g.session!.tik };
  t.true(verifyMeasurement({ ...expected, measurement: parseLaunchMeasurement(m.data!) }));
  t.false(
    verifyMeasurement({ ...expected, digest: launchDigest([image.subarray(1)]), measurement: parseLaunchMeasurement(m.data!) }),
    'other digest',
  );
  t.false(verifyMeasurement({ ...expected, tik: randomBytes(16), measurement: parseLaunchMeasurement(m.data!) }), 'other TIK');
  t.false(verifyMeasurement({ ...expected, build: 16, measurement: parseLaunchMeasurement(m.data!) }), 'other firmware build');
  t.false(verifyMeasurement({ ...expected, policy: 0, measurement: parseLaunchMeasurement(m.data!) }), 'other policy');
});

test('LAUNCH_MEASURE: length query (INVALID_LEN with 48, state unchanged), fresh MNONCE per launch', (t) => {
  const fw = ready();
  const g = launch(fw);
  t.deepEqual(fw.launchMeasure(g.handle, 0), { status: SEV_RET.INVALID_LEN, length: 48 });
  t.deepEqual(fw.launchMeasure(g.handle, 47), { status: SEV_RET.INVALID_LEN, length: 48 });
  t.is(fw.guestStatus(g.handle).state, GSTATE.LUPDATE);
  const a = fw.launchMeasure(g.handle, 4096).data!;
  t.is(a.length, 48);
  t.is(fw.guestStatus(g.handle).state, GSTATE.LSECRET);
  const b = fw.launchMeasure(launch(fw).handle, 48).data!;
  t.not(hex(a.subarray(32)), hex(b.subarray(32)));
});

test('§10 V4 through LAUNCH_MEASURE: fixed TIK (session) and MNONCE (random source), API 0.18 build 15', (t) => {
  const rnd = scriptedRandom();
  const profile = { ...ROME, apiMajor: 0, apiMinor: 0x12, build: 0x0f };
  const fw = ready({ profile, random: rnd.random });
  const tik = Buffer.from('66320db73158a35a255d051758e95ed4', 'hex');
  const s = owner(fw, 0, { tik });
  const r = fw.launchStart({ handle: 0, policy: 0, dhCert: s.godhCert, session: s.session });
  t.is(r.status, 0);
  rnd.queue(Buffer.from('4fbe0bedbad6c86ae8f68971d103e554', 'hex'));
  const m = fw.launchMeasure(r.handle, 48);
  t.is(rnd.pending(), 0, 'the MNONCE came from the random source');
  t.is(hex(m.data!.subarray(0, 32)), '6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea');
  t.is(hex(m.data!.subarray(32)), '4fbe0bedbad6c86ae8f68971d103e554');
});

test('§10 V2 through SEND_START: TIK = 0 and policy 0 give POLICY_MAC = HMAC(0¹⁶, 0⁴)', (t) => {
  const rnd = scriptedRandom();
  const fw = ready({ random: rnd.random });
  const g = launch(fw, 0);
  advance(fw, g, GSTATE.RUNNING);
  rnd.queue(Buffer.alloc(16), Buffer.alloc(16), Buffer.alloc(16), Buffer.alloc(16)); // TEK, TIK, NONCE, WRAP_IV
  const r = fw.sendStart(g.handle, {
    pdhCert: exported(ready()).pdh,
    platCerts: new Uint8Array(0),
    amdCerts: new Uint8Array(0),
    sessionCapacity: 128,
  });
  t.is(r.status, 0);
  t.is(rnd.pending(), 0);
  const session = Buffer.from(r.session!);
  t.is(hex(session.subarray(0x60)), 'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af');
  t.is(hex(session.subarray(0, 16)), '00'.repeat(16), 'NONCE');
  t.is(hex(session.subarray(0x30, 0x40)), '00'.repeat(16), 'WRAP_IV');
});

test('LAUNCH_START without a session: TEK and TIK are zero (the measurement is keyed with a zero TIK)', (t) => {
  const fw = ready();
  const g = launch(fw, SEV_POLICY.NOKS, { session: false });
  const data = randomBytes(64);
  t.is(fw.launchUpdateData(g.handle, range(0x2000n, Buffer.from(data))).status, 0);
  const m = parseLaunchMeasurement(fw.launchMeasure(g.handle, 48).data!);
  t.true(verifyMeasurement({ ...FW, policy: SEV_POLICY.NOKS, digest: launchDigest([data]), tik: Buffer.alloc(16), measurement: m }));
  const secret = buildSecret({ tek: Buffer.alloc(16), tik: Buffer.alloc(16), measurement: m, secret: Buffer.alloc(16, 0xab) });
  const dst = range(0x8000n, new Uint8Array(16));
  t.is(fw.launchSecret(g.handle, { header: secret.header, guest: dst, trans: secret.trans }).status, 0);
  const out = range(0x9000n, new Uint8Array(16));
  t.is(fw.dbgDecrypt(g.handle, dst, out).status, 0);
  t.deepEqual(Buffer.from(out.bytes), Buffer.alloc(16, 0xab));
});

test('LAUNCH_START: a tampered session is BAD_MEASUREMENT (wrap MAC, wrapped keys, IV, nonce, policy MAC, policy)', (t) => {
  const fw = ready();
  const s = owner(fw, SEV_POLICY.NODBG);
  const start = (session: Uint8Array, policy = SEV_POLICY.NODBG): { status: number } =>
    fw.launchStart({ handle: 0, policy, dhCert: s.godhCert, session });
  const flip = (off: number): Buffer => {
    const b = Buffer.from(s.session);
    b[off]! ^= 0x80;
    return b;
  };
  for (const [what, off] of [
    ['NONCE', 0x00],
    ['WRAP_TK', 0x10],
    ['WRAP_TK (TIK half)', 0x2f],
    ['WRAP_IV', 0x3f],
    ['WRAP_MAC', 0x40],
    ['POLICY_MAC', 0x7f],
  ] as const) {
    expectStatus(t, start(flip(off)), SEV_RET.BAD_MEASUREMENT, what);
  }
  expectStatus(t, start(s.session, 0), SEV_RET.BAD_MEASUREMENT, "policy differs from the MAC'd one");
  const other = owner(ready(), SEV_POLICY.NODBG);
  expectStatus(
    t,
    fw.launchStart({ handle: 0, policy: SEV_POLICY.NODBG, dhCert: other.godhCert, session: other.session }),
    SEV_RET.BAD_MEASUREMENT,
    'session made for another PDH',
  );
  t.is(fw.platformStatus().guestCount, 0);
  t.is(start(s.session).status, 0);
});

test('LAUNCH_START: lengths (INVALID_LEN) before the GODH check (INVALID_CERTIFICATE)', (t) => {
  const fw = ready();
  const s = owner(fw, 0);
  const start = (dhCert: Uint8Array | null, session: Uint8Array | null): { status: number } =>
    fw.launchStart({ handle: 0, policy: 0, dhCert, session });
  const godh = parseSevCert(s.godhCert);
  const bad = (c: SevCertificate): Buffer => serializeSevCert(c);
  expectStatus(t, start(s.godhCert, null), SEV_RET.INVALID_LEN, 'certificate without session');
  expectStatus(t, start(s.godhCert, s.session.subarray(0, 127)), SEV_RET.INVALID_LEN);
  expectStatus(t, start(s.godhCert, Buffer.concat([s.session, Buffer.alloc(1)])), SEV_RET.INVALID_LEN);
  expectStatus(t, start(s.godhCert.subarray(0, 0x823), s.session), SEV_RET.INVALID_LEN);
  expectStatus(t, start(bad({ ...godh, version: 2 }), s.session.subarray(1)), SEV_RET.INVALID_LEN, 'length first');
  expectStatus(t, start(bad({ ...godh, version: 2 }), s.session), SEV_RET.INVALID_CERTIFICATE, 'version');
  expectStatus(t, start(bad({ ...godh, pubKeyUsage: SevUsage.PEK }), s.session), SEV_RET.INVALID_CERTIFICATE, 'usage');
  expectStatus(t, start(bad({ ...godh, pubKeyAlgo: SevAlgo.ECDH_SHA384 }), s.session), SEV_RET.INVALID_CERTIFICATE, 'algorithm');
  const pk = godh.pubKey;
  if (pk.kind !== 'ecc') throw new Error('GODH has an ECC key');
  expectStatus(t, start(bad({ ...godh, pubKey: { ...pk, curve: 1 } }), s.session), SEV_RET.INVALID_CERTIFICATE, 'curve');
  const qx = Buffer.from(pk.qx);
  qx[0]! ^= 1;
  expectStatus(t, start(bad({ ...godh, pubKey: { ...pk, qx } }), s.session), SEV_RET.INVALID_CERTIFICATE, 'point off the curve');
  // Signatures of the GODH are not checked: a signed one works as well.
  const signed = createSevCert({ usage: SevUsage.PDH, algo: SevAlgo.ECDH_SHA256, publicKey: s.godhPrivateKey });
  t.is(start(serializeSevCert(signed), s.session).status, 0);
  t.is(fw.platformStatus().guestCount, 1);
});

test('LAUNCH_SECRET: an owner secret lands in guest memory as private memory; readable by DBG_DECRYPT', (t) => {
  const fw = ready();
  const g = launch(fw, 0);
  const m = parseLaunchMeasurement(fw.launchMeasure(g.handle, 48).data!);
  const secret = buildSecret({
    tek: g.session!.tek,
    tik: g.session!.tik,
    measurement: m,
    secret: [{ guid: LUKS_KEY_GUID, data: Buffer.from('correct horse battery staple') }],
  });
  const area = range(0x820000n, new Uint8Array(secret.plaintext.length));
  t.is(fw.launchSecret(g.handle, { header: secret.header, guest: area, trans: secret.trans }).status, 0);
  t.false(Buffer.from(area.bytes).equals(secret.plaintext), 'stored encrypted (pure mock)');
  const out = range(0x9000n, new Uint8Array(area.bytes.length));
  t.is(fw.dbgDecrypt(g.handle, area, out).status, 0);
  t.deepEqual(Buffer.from(out.bytes), secret.plaintext);
  t.is(parseSecretTable(Buffer.from(out.bytes))[0]!.data.toString(), 'correct horse battery staple');
  // LAUNCH_SECRET may be repeated in LSECRET; LAUNCH_FINISH wipes the keys.
  t.is(
    fw.launchSecret(g.handle, { header: secret.header, guest: range(0x821000n, new Uint8Array(area.bytes.length)), trans: secret.trans })
      .status,
    0,
  );
  t.is(fw.launchFinish(g.handle).status, 0);
  expectStatus(t, fw.launchSecret(g.handle, { header: secret.header, guest: area, trans: secret.trans }), SEV_RET.INVALID_GUEST_STATE);
});

test('LAUNCH_SECRET: checks in order; tampering is BAD_MEASUREMENT; COMPRESSED is UNSUPPORTED after the MAC', (t) => {
  const fw = ready();
  const g = launch(fw, 0);
  const m = parseLaunchMeasurement(fw.launchMeasure(g.handle, 48).data!);
  const { tek, tik } = g.session!;
  const plaintext = randomBytes(64);
  const good = buildSecret({ tek, tik, measurement: m, secret: plaintext });
  const ls = (header: Uint8Array, paddr: bigint, len: number, trans: Uint8Array): { status: number } =>
    fw.launchSecret(g.handle, { header, guest: range(paddr, new Uint8Array(len)), trans });
  expectStatus(t, ls(good.header.subarray(1), 0x1008n, 64, good.trans), SEV_RET.INVALID_ADDRESS, 'address before lengths');
  expectStatus(t, ls(good.header.subarray(1), 0x1000n, 64, good.trans), SEV_RET.INVALID_LEN, 'header 51 bytes');
  expectStatus(t, ls(good.header, 0x1000n, 48, good.trans), SEV_RET.INVALID_LEN, 'guest_len ≠ trans_len');
  expectStatus(t, ls(good.header, 0x1000n, 0, new Uint8Array(0)), SEV_RET.INVALID_LEN, 'zero length');
  expectStatus(t, ls(good.header, 0x1000n, 24, new Uint8Array(24)), SEV_RET.INVALID_LEN, 'not a 16 multiple');
  expectStatus(t, ls(good.header, 0x1000n, 0x5010, new Uint8Array(0x5010)), SEV_RET.INVALID_LEN, '> 0x5000');
  const tampered = (f: (h: Buffer, c: Buffer) => void): { status: number } => {
    const h = Buffer.from(good.header);
    const c = Buffer.from(good.trans);
    f(h, c);
    return ls(h, 0x1000n, 64, c);
  };
  expectStatus(
    t,
    tampered((_h, c) => (c[5]! ^= 1)),
    SEV_RET.BAD_MEASUREMENT,
    'ciphertext',
  );
  expectStatus(
    t,
    tampered((h) => (h[4]! ^= 1)),
    SEV_RET.BAD_MEASUREMENT,
    'IV',
  );
  expectStatus(
    t,
    tampered((h) => (h[0x30]! ^= 1)),
    SEV_RET.BAD_MEASUREMENT,
    'MAC',
  );
  expectStatus(
    t,
    tampered((h) => (h[0]! ^= 1)),
    SEV_RET.BAD_MEASUREMENT,
    'COMPRESSED flag under the MAC',
  );
  const other = buildSecret({ tek, tik, measurement: { measure: randomBytes(32) }, secret: plaintext });
  expectStatus(t, ls(other.header, 0x1000n, 64, other.trans), SEV_RET.BAD_MEASUREMENT, 'bound to another measurement');
  const compressed = sealSecret({ tek, tik, measurement: m.measure, plaintext, flags: 1 });
  expectStatus(t, ls(compressed.headerBytes, 0x1000n, 64, compressed.trans), SEV_RET.UNSUPPORTED);
  const area = range(0x1000n, new Uint8Array(64));
  t.is(fw.launchSecret(g.handle, { header: good.header, guest: area, trans: good.trans }).status, 0);
  t.false(Buffer.from(area.bytes).equals(plaintext));
  const out = range(0x3000n, new Uint8Array(64));
  t.is(fw.dbgDecrypt(g.handle, area, out).status, 0);
  t.deepEqual(Buffer.from(out.bytes), plaintext);
});

test('ATTESTATION: PEK-signed report of mnonce, launch digest and policy; state before length', (t) => {
  const fw = ready();
  const policy = SEV_POLICY.NOKS;
  const g = launch(fw, policy);
  const image = randomBytes(4096);
  t.is(fw.launchUpdateData(g.handle, range(0n, Buffer.from(image))).status, 0);
  expectStatus(t, fw.attestation(g.handle, randomBytes(16), 0), SEV_RET.INVALID_GUEST_STATE, 'LUPDATE, even for a query');
  advance(fw, g, GSTATE.LSECRET);
  t.deepEqual(fw.attestation(g.handle, randomBytes(16), 0xcf), { status: SEV_RET.INVALID_LEN, length: 0xd0 });
  advance(fw, g, GSTATE.RUNNING);
  const mnonce = randomBytes(16);
  const r = fw.attestation(g.handle, mnonce, 0xd0);
  t.like(r, { status: 0, length: 0xd0 });
  const rep = parseAttestationReport(r.data!);
  t.deepEqual(rep.mnonce, mnonce);
  t.deepEqual(rep.launchDigest, launchDigest([image]));
  t.is(rep.policy, policy);
  const { pek } = exported(fw);
  t.true(verifyAttestationReport(r.data!, pek));
  t.false(verifyAttestationReport(r.data!, exported(ready()).pek), "another platform's PEK");
});

test('the mock chain (PDH_CERT_EXPORT + the mock root) verifies with lib/owner verifyChain; not without the root', (t) => {
  const fw = ready();
  const c = exported(fw);
  const v = verifyChain({ ...c, extraRoots: [{ ark: root().ark, ask: root().ask }] });
  t.deepEqual(serializeSevCert(v.pdh), c.pdh);
  t.throws(() => verifyChain(c), { name: 'SevChainError' });
  // And an owner session against the verified PDH launches.
  const s = createSession({ pdh: v.pdh, policy: 0 });
  t.is(fw.launchStart({ handle: 0, policy: 0, dhCert: s.godhCert, session: s.session }).status, 0);
});

test('default roots follow the generation: RSA-2048 (Naples, CEK signed RSA_SHA256), RSA-4096 (Milan, RSA_SHA384)', async (t) => {
  const naples = new MockFirmware({ profile: NAPLES, memory: new CiphertextMemory() });
  t.is(naples.root, root(), 'one mock root per process and size');
  t.is(naples.init({ es: false }).status, 0);
  t.is(parseSevCert(exported(naples).cek).sig1.algo, SevAlgo.RSA_SHA256);

  const milan = await MockFirmware.create({ profile: MILAN, memory: new CiphertextMemory() });
  t.is(milan.root.ark.modulusBits, 4096);
  t.is(milan.init({ es: true }).status, 0);
  const c = exported(milan);
  t.is(parseSevCert(c.cek).sig1.algo, SevAlgo.RSA_SHA384);
  t.notThrows(() => verifyChain({ ...c, extraRoots: [{ ark: milan.root.ark, ask: milan.root.ask }] }));
  const again = await MockFirmware.create({ profile: MILAN, memory: new CiphertextMemory() });
  t.is(again.root, milan.root);
  t.deepEqual(Buffer.from(milan.amdCerts()).length, 2 * 0x640);
});

test('Genoa exports an unsigned CEK placeholder; the KDS CEK completes the chain', (t) => {
  const fw = ready({ profile: GENOA, es: true });
  const c = exported(fw);
  const cek = parseSevCert(c.cek);
  t.deepEqual([cek.sig1.usage, cek.sig2.usage], [SevUsage.INVALID, SevUsage.INVALID]);
  const extraRoots = [{ ark: root().ark, ask: root().ask }];
  t.throws(() => verifyChain({ ...c, extraRoots }), { name: 'SevChainError' });
  const kds = parseSevCert(fw.kdsCek());
  t.deepEqual(kds.pubKey, cek.pubKey);
  t.true(verifySevCert(kds, root().ask).ok);
  t.notThrows(() => verifyChain({ ...c, cek: fw.kdsCek(), extraRoots }));
});

test('the random source drives keys: the same scripted randomness and chip key give the same PDH and VEK', (t) => {
  const seq = (): ((n: number) => Uint8Array) => {
    let i = 0;
    return (n) => createHash('sha512').update(`seed-${i++}`).digest().subarray(0, n);
  };
  const a = ready({ random: seq(), chipKey: Buffer.alloc(32, 1) });
  const b = ready({ random: seq(), chipKey: Buffer.alloc(32, 1) });
  t.deepEqual(parseSevCert(exported(a).pdh).pubKey, parseSevCert(exported(b).pdh).pubKey);
  const ga = launch(a, 0, { session: false, asid: 100 });
  const gb = launch(b, 0, { session: false, asid: 100 });
  const pa = range(0x4000n, Buffer.alloc(32, 9));
  const pb = range(0x4000n, Buffer.alloc(32, 9));
  t.is(a.launchUpdateData(ga.handle, pa).status, 0);
  t.is(b.launchUpdateData(gb.handle, pb).status, 0);
  t.deepEqual(pa.bytes, pb.bytes, 'same VEK, same address: same ciphertext');
  t.notDeepEqual(Buffer.from(pa.bytes), Buffer.alloc(32, 9));
});

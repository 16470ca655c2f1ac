/**
 * The guest owner's flow against a platform built from lib/crypto (what the mock firmware
 * will do): verify chain → session → LAUNCH_START unwrap → measurement → secret.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import {
  LUKS_KEY_GUID,
  SevCertError,
  SevChainError,
  SevMacError,
  assertMeasurement,
  buildSecret,
  createSession,
  encodePolicy,
  launchDigest,
  parseLaunchMeasurement,
  parseSecretTable,
  parseSevCert,
  verifyChain,
  verifyMeasurement,
} from '../../lib/owner/index.js';
import {
  SevAlgo,
  SevUsage,
  checkGodhCert,
  computeLaunchMeasurement,
  mintAmdRoot,
  mintPlatformChain,
  openLaunchSession,
  openSecret,
  serializeAmdCert,
  serializeSevCert,
} from '../../lib/crypto/index.js';
import type { MintedPlatform } from '../../lib/crypto/index.js';
import { flip, platformCerts } from '../helpers/cert-fixtures.js';

const FW = { apiMajor: 0, apiMinor: 24, build: 15 };

async function mockPlatform(): Promise<{ platform: MintedPlatform; extraRoots: Array<{ ark: Buffer; ask: Buffer }> }> {
  const root = await mintAmdRoot({ bits: 2048, cacheName: 'owner-test' });
  const platform = mintPlatformChain({ ask: root.ask, askKey: root.askKey, chipUniqueKey: Buffer.alloc(32, 1) });
  return { platform, extraRoots: [{ ark: serializeAmdCert(root.ark), ask: serializeAmdCert(root.ask) }] };
}

/** What the firmware does from LAUNCH_START to LAUNCH_MEASURE, with lib/crypto. */
function firmwareLaunch(platform: MintedPlatform, session: Uint8Array, godhCert: Uint8Array, policy: number, updates: Buffer[]) {
  const { tek, tik } = openLaunchSession({ session, godhCert, pdhPrivateKey: platform.keys.pdh, policy });
  const digest = launchDigest(updates);
  const mnonce = randomBytes(16);
  const measure = computeLaunchMeasurement({ ...FW, policy, digest, mnonce, tik });
  return { tek, tik, blob: Buffer.concat([measure, mnonce]), measure, measurement: { measure, mnonce } };
}

test('owner ↔ platform: chain, session, measurement, secret', async (t) => {
  const { platform, extraRoots } = await mockPlatform();
  const chain = verifyChain({ cek: serializeSevCert(platform.cek), oca: platform.oca, pek: platform.pek, pdh: platform.pdh, extraRoots });
  t.is(chain.generation, undefined);

  const policy = encodePolicy({ nodbg: true, noks: true });
  const s = createSession({ pdh: chain.pdh, policy });
  t.is(s.session.length, 128);
  t.is(s.godhCert.length, 0x824);
  const godh = parseSevCert(s.godhCert);
  t.deepEqual(
    [godh.pubKeyUsage, godh.pubKeyAlgo, godh.sig1.usage, godh.sig2.usage],
    [SevUsage.PDH, SevAlgo.ECDH_SHA256, SevUsage.INVALID, SevUsage.INVALID],
  );
  t.true(checkGodhCert(godh).ok);

  const ovmf = randomBytes(8192);
  const fw = firmwareLaunch(platform, s.session, s.godhCert, policy, [ovmf.subarray(0, 4096), ovmf.subarray(4096)]);
  t.true(fw.tek.equals(s.tek) && fw.tik.equals(s.tik));

  const expected = { ...FW, policy, digest: launchDigest([ovmf]), tik: s.tik };
  t.true(verifyMeasurement({ ...expected, measurement: fw.measurement }));
  t.notThrows(() => assertMeasurement({ ...expected, measurement: fw.measurement }));

  const secret = buildSecret({
    tek: s.tek,
    tik: s.tik,
    measurement: fw.measurement,
    secret: [{ guid: LUKS_KEY_GUID, data: Buffer.from('hunter2') }],
  });
  t.is(secret.header.length, 52);
  t.is(secret.trans.length % 16, 0);
  const landed = openSecret({ tek: fw.tek, tik: fw.tik, measurement: fw.measure, header: secret.header, trans: secret.trans });
  t.true(landed.equals(secret.plaintext));
  const table = parseSecretTable(landed);
  t.is(table[0]!.guid, LUKS_KEY_GUID);
  t.is(Buffer.from(table[0]!.data).toString(), 'hunter2');
});

test('measurement mismatches: digest, policy, firmware version, build, TIK, nonce', async (t) => {
  const { platform } = await mockPlatform();
  const policy = 0;
  const s = createSession({ pdh: platform.pdh, policy });
  const image = randomBytes(4096);
  const fw = firmwareLaunch(platform, s.session, s.godhCert, policy, [image]);
  const good: {
    apiMajor: number;
    apiMinor: number;
    build: number;
    policy: number;
    digest: Uint8Array;
    tik: Uint8Array;
    measurement: { measure: Uint8Array; mnonce: Uint8Array };
  } = {
    ...FW,
    policy,
    digest: launchDigest([image]),
    tik: s.tik,
    measurement: fw.measurement,
  };
  t.true(verifyMeasurement(good));
  const bad: Array<[string, Partial<typeof good>]> = [
    ['other image', { digest: launchDigest([flip(image, 100)]) }],
    ['other policy', { policy: 1 }],
    ['other API minor', { apiMinor: 23 }],
    ['other build', { build: 16 }],
    ['other TIK', { tik: randomBytes(16) }],
    ['other MNONCE', { measurement: parseLaunchMeasurement(flip(fw.blob, 40)) }],
    ['other MEASURE', { measurement: parseLaunchMeasurement(flip(fw.blob, 0)) }],
  ];
  for (const [name, change] of bad) {
    t.false(verifyMeasurement({ ...good, ...change }), name);
    const e = t.throws(() => assertMeasurement({ ...good, ...change }), { instanceOf: SevMacError }, name);
    t.is(e?.mac, 'measurement');
  }
});

test('LAUNCH_START rejects a session for another policy, PDH or a tampered blob', async (t) => {
  const { platform } = await mockPlatform();
  const root = await mintAmdRoot({ bits: 2048, cacheName: 'owner-test' });
  const other = mintPlatformChain({ ask: root.ask, askKey: root.askKey });
  const s = createSession({ pdh: platform.pdh, policy: 1 });
  const mac = (fn: () => unknown) => (t.throws(fn, { instanceOf: SevMacError }) as SevMacError | undefined)?.mac;
  t.is(
    mac(() => openLaunchSession({ session: s.session, godhCert: s.godhCert, pdhPrivateKey: platform.keys.pdh, policy: 3 })),
    'policy',
  );
  t.is(
    mac(() => openLaunchSession({ session: flip(s.session, 0x41), godhCert: s.godhCert, pdhPrivateKey: platform.keys.pdh, policy: 1 })),
    'wrap',
  );
  t.is(
    mac(() => openLaunchSession({ session: flip(s.session, 0x61), godhCert: s.godhCert, pdhPrivateKey: platform.keys.pdh, policy: 1 })),
    'policy',
  );
  t.is(
    mac(() => openLaunchSession({ session: s.session, godhCert: s.godhCert, pdhPrivateKey: other.keys.pdh, policy: 1 })),
    'wrap',
  );
  t.notThrows(() => openLaunchSession({ session: s.session, godhCert: s.godhCert, pdhPrivateKey: platform.keys.pdh, policy: 1 }));
});

test('secret: wrong key or measurement at the platform fails; lengths are checked', async (t) => {
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const measure = randomBytes(32);
  const blob = Buffer.concat([measure, randomBytes(16)]);
  const raw = randomBytes(32);
  const iv = randomBytes(16);
  const a = buildSecret({ tek, tik, measurement: parseLaunchMeasurement(blob), secret: raw, iv });
  const b = buildSecret({ tek, tik, measurement: { measure }, secret: raw, iv });
  t.true(a.header.equals(b.header) && a.trans.equals(b.trans)); // the whole measurement ≡ its MEASURE
  t.true(openSecret({ tek, tik, measurement: measure, header: a.header, trans: a.trans }).equals(raw));
  t.throws(() => openSecret({ tek, tik: randomBytes(16), measurement: measure, header: a.header, trans: a.trans }), {
    instanceOf: SevMacError,
  });
  t.throws(() => openSecret({ tek, tik, measurement: randomBytes(32), header: a.header, trans: a.trans }), { instanceOf: SevMacError });
  t.false(openSecret({ tek: randomBytes(16), tik, measurement: measure, header: a.header, trans: a.trans }).equals(raw));
  for (const len of [0, 15, 17, 0x5010]) {
    t.throws(
      () => buildSecret({ tek, tik, measurement: { measure }, secret: Buffer.alloc(len) }),
      { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' },
      `length ${len}`,
    );
  }
  t.throws(() => buildSecret({ tek, tik, measurement: { measure: randomBytes(40) }, secret: raw }), { code: 'ERR_INVALID_ARG_VALUE' });
  // A bare byte string is not a LaunchMeasurement: the error says how to make one.
  t.throws(() => buildSecret({ tek, tik, measurement: blob as never, secret: raw }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /parseLaunchMeasurement/,
  });
  t.throws(() => buildSecret({ tek, tik, measurement: { measure }, secret: 'x' as never }), {
    instanceOf: TypeError,
    code: 'ERR_INVALID_ARG_TYPE',
  });
});

test('createSession with a real AMD PDH, and its refusals', (t) => {
  const rome = platformCerts('rome');
  const chain = verifyChain(rome);
  t.is(chain.generation, 'rome');
  const s = createSession({ pdh: rome.pdh, policy: 0x00160000 });
  const godh = parseSevCert(s.godhCert);
  t.deepEqual([godh.apiMajor, godh.apiMinor], [0, 22]);
  t.not(createSession({ pdh: rome.pdh, policy: 0 }).session.toString('hex'), s.session.toString('hex'));
  // Not a PDH.
  const e = t.throws(() => createSession({ pdh: rome.pek, policy: 0 }), { instanceOf: SevCertError });
  t.is(e?.reason, 'wrong-usage');
  // A PDH whose point is off the curve.
  t.throws(() => createSession({ pdh: flip(rome.pdh, 0x14 + 2), policy: 0 }), { instanceOf: SevCertError });
  // Reserved policy bits: the firmware would answer POLICY_FAILURE.
  t.throws(() => createSession({ pdh: rome.pdh, policy: 0x40 }), { code: 'ERR_INVALID_ARG_VALUE' });
  // Fixed inputs give a fixed session (no hidden randomness besides the GODH key).
  const fixed = {
    tek: Buffer.alloc(16, 1),
    tik: Buffer.alloc(16, 2),
    nonce: Buffer.alloc(16, 3),
    wrapIv: Buffer.alloc(16, 4),
    godhKey: s.godhPrivateKey,
  };
  t.true(
    createSession({ pdh: rome.pdh, policy: 0, ...fixed }).session.equals(createSession({ pdh: rome.pdh, policy: 0, ...fixed }).session),
  );
});

test('owner verifyChain reports chain errors with link and reason', async (t) => {
  const { platform, extraRoots } = await mockPlatform();
  const e = t.throws(() => verifyChain({ ...platform, pdh: platformCerts('rome').pdh, extraRoots }), { instanceOf: SevChainError });
  t.is(e?.link, 'pdh-by-pek');
  t.is(e?.reason, 'bad-signature');
  const e2 = t.throws(() => verifyChain({ cek: platform.cek, oca: platform.oca, pek: platform.pek, pdh: platform.pdh }), {
    instanceOf: SevChainError,
  });
  t.is(e2?.link, 'cek-by-ask');
  t.throws(() => verifyChain({ ...platform, ark: extraRoots[0]!.ark }), { code: 'ERR_INVALID_ARG_VALUE' });
});

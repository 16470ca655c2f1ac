/** The public vectors V1..V4 of docs/sev-reference.md §10 (virtee/sev, AMD sev-tool), bit-exact; bare § below are its sections. */
import test from 'ava';
import { createHash, createHmac } from 'node:crypto';
import {
  AMD_ROOTS,
  LaunchDigest,
  computeLaunchMeasurement,
  computePolicyMac,
  deriveSessionKeys,
  kdfSp800108,
  parseSession,
  serializeSession,
  unwrapSession,
  wrapSession,
} from '../../lib/crypto/index.js';
import { parseLaunchMeasurement, verifyMeasurement } from '../../lib/owner/index.js';
import { hex } from '../helpers/cert-fixtures.js';

const Z16 = Buffer.alloc(16);

test('V1 KDF: KDF(16×00, "sev-master-secret", 16×00, 128)', (t) => {
  t.is(kdfSp800108(Z16, 'sev-master-secret', Z16, 128).toString('hex'), 'ab4d269fcc62bedb4511d56c386ce706');
  // The counter and L are little-endian (§11.2): the usual big-endian reading gives another value.
  const be = createHmac('sha256', Z16)
    .update(Buffer.concat([hex('00000001'), Buffer.from('sev-master-secret'), Buffer.from([0]), Z16, hex('00000080')]))
    .digest()
    .subarray(0, 16);
  t.not(be.toString('hex'), 'ab4d269fcc62bedb4511d56c386ce706');
  t.not(kdfSp800108(Z16, 'sev-master-secret', Buffer.alloc(16, 1), 128).toString('hex'), 'ab4d269fcc62bedb4511d56c386ce706');
});

test('V2 HMAC: POLICY_MAC for TIK = 0, policy = 0', (t) => {
  t.is(computePolicyMac(Z16, 0).toString('hex'), 'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af');
  t.not(computePolicyMac(Z16, 1).toString('hex'), 'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af');
});

test('V3 session blob: Z = 16×00, NONCE = IV = TEK = TIK = 0, policy 0', (t) => {
  const s = wrapSession({ sharedSecret: Z16, tek: Z16, tik: Z16, policy: 0, nonce: Z16, wrapIv: Z16 });
  t.is(s.keys.masterSecret.toString('hex'), 'ab4d269fcc62bedb4511d56c386ce706');
  t.is(s.keys.kek.toString('hex'), 'b6abfbfb75ea1ea74ed8750b8afdb973');
  t.is(s.keys.kik.toString('hex'), '53b524bf5669a363f365c864acba8572');
  t.is(s.wrapTk.toString('hex'), '2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4');
  t.is(s.wrapMac.toString('hex'), '3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d');
  t.is(s.policyMac.toString('hex'), 'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af');

  // The 128-byte layout: NONCE @0, WRAP_TK @0x10, WRAP_IV @0x30, WRAP_MAC @0x40, POLICY_MAC @0x60.
  const blob = serializeSession(s);
  t.is(blob.length, 128);
  t.is(blob.subarray(0x10, 0x30).toString('hex'), '2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4');
  t.is(blob.subarray(0x40, 0x60).toString('hex'), '3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d');
  t.is(blob.subarray(0x60, 0x80).toString('hex'), 'aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af');
  t.true(blob.subarray(0, 0x10).equals(Z16) && blob.subarray(0x30, 0x40).equals(Z16));
  t.deepEqual(parseSession(blob), { nonce: Z16, wrapTk: s.wrapTk, wrapIv: Z16, wrapMac: s.wrapMac, policyMac: s.policyMac });

  // And the platform side opens it.
  const { tek, tik } = unwrapSession({ session: blob, sharedSecret: Z16, policy: 0 });
  t.true(tek.equals(Z16) && tik.equals(Z16));
  t.is(deriveSessionKeys(Z16, Z16).kik.toString('hex'), '53b524bf5669a363f365c864acba8572');
});

const V4 = {
  apiMajor: 0x00,
  apiMinor: 0x12,
  build: 0x0f,
  policy: 0,
  digest: hex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'),
  mnonce: hex('4fbe0bedbad6c86ae8f68971d103e554'),
  tik: hex('66320db73158a35a255d051758e95ed4'),
};
const V4_MEASURE = '6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea';

test('V4 measurement', (t) => {
  t.is(computeLaunchMeasurement(V4).toString('hex'), V4_MEASURE);
  // LD of no updates at all is SHA-256 of "".
  t.true(new LaunchDigest().digest().equals(V4.digest));
  t.true(createHash('sha256').digest().equals(V4.digest));
  // Every input matters.
  for (const change of [
    { apiMajor: 1 },
    { apiMinor: 0x11 },
    { build: 0x10 },
    { policy: 1 },
    { mnonce: Buffer.alloc(16) },
    { tik: Buffer.alloc(16) },
  ]) {
    t.not(computeLaunchMeasurement({ ...V4, ...change }).toString('hex'), V4_MEASURE, JSON.stringify(change));
  }
});

test('V4 through the owner API (48-byte LAUNCH_MEASURE blob)', (t) => {
  const measurement = parseLaunchMeasurement(Buffer.concat([hex(V4_MEASURE), V4.mnonce]));
  t.true(verifyMeasurement({ ...V4, measurement }));
  t.false(verifyMeasurement({ ...V4, measurement, build: 0x0e }));
  t.false(verifyMeasurement({ ...V4, measurement: parseLaunchMeasurement(Buffer.concat([hex(V4_MEASURE), Buffer.alloc(16)])) }));
});

test('built-in AMD roots carry the sha256 the reference lists (§10 V8)', (t) => {
  const sha = (b64: string): string => createHash('sha256').update(Buffer.from(b64, 'base64')).digest('hex');
  t.is(sha(AMD_ROOTS.rome.ark), '865977b268c16d5b27772b00aaefb4e737ba9499e818ed8e9f65b0cecefbc529');
  t.is(sha(AMD_ROOTS.rome.ask), '7754a69407d25540fe3a695be6b02c58a53bffd12594f5c30793d6cb62875706');
  t.is(sha(AMD_ROOTS.naples.ark), 'dedabca561e1dece8cc00b7bda864cf5f20b95017864408cfe18eaee0dce24b9');
  t.is(sha(AMD_ROOTS.naples.ask), 'c6f30cf923f526c3bcd5c8c221db51e0db65911782f046de17a6603131cdfd7f');
  for (const g of Object.keys(AMD_ROOTS) as Array<keyof typeof AMD_ROOTS>) {
    t.is(sha(AMD_ROOTS[g].ark), AMD_ROOTS[g].arkSha256, g);
    t.is(sha(AMD_ROOTS[g].ask), AMD_ROOTS[g].askSha256, g);
  }
});

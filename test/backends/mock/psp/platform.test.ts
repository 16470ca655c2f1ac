/**
 * Mock PSP: the platform state machine and every platform command (docs/sev-reference.md §2.1, §7.3; bare § below),
 * length queries, PEK_GEN / PDH_GEN / PEK_CERT_IMPORT semantics.
 */
import test from 'ava';
import { verifyChain } from '../../../../lib/owner/index.js';
import {
  EMPTY_SLOT,
  SevAlgo,
  SevUsage,
  generateP384,
  mintOca,
  parseSevCert,
  serializeSevCert,
  signSevCert,
  verifySevCert,
} from '../../../../lib/crypto/index.js';
import type { SevCertificate } from '../../../../lib/crypto/index.js';
import { MockFirmware, NAPLES, CiphertextMemory } from '../../../../lib/backends/mock/psp/index.js';
import { PSTATE } from '../../../../lib/uapi/constants.js';
import { SEV_RET, advance, expectStatus, firmware, launch, ready, root, st } from './fixtures.js';
import { GSTATE } from './fixtures.js';

function exportChain(fw: MockFirmware): { pdh: SevCertificate; pek: SevCertificate; oca: SevCertificate; cek: SevCertificate } {
  const r = fw.pdhCertExport(0x824, 0x186c);
  const at = (i: number): SevCertificate => parseSevCert(r.certs!.subarray(i * 0x824, (i + 1) * 0x824));
  return { pdh: parseSevCert(r.pdh!), pek: at(0), oca: at(1), cek: at(2) };
}

const extraRoots = (): Array<{ ark: ReturnType<typeof root>['ark']; ask: ReturnType<typeof root>['ask'] }> => [
  { ark: root().ark, ask: root().ask },
];

test('INIT / SHUTDOWN / PLATFORM_STATUS: UNINIT → INIT → WORKING → UNINIT', (t) => {
  const fw = firmware();
  t.deepEqual(fw.platformStatus(), {
    status: 0,
    apiMajor: 0,
    apiMinor: 24,
    state: PSTATE.UNINIT,
    owner: 0,
    config: 0,
    build: 15,
    guestCount: 0,
  });
  expectStatus(t, fw.init({ es: false }), SEV_RET.SUCCESS);
  t.is(fw.platformStatus().state, PSTATE.INIT);
  expectStatus(t, fw.init({ es: false }), SEV_RET.INVALID_PLATFORM_STATE, 'INIT twice');
  t.is(fw.dfFlush().status, 0);
  const g = launch(fw, 0, { session: false });
  t.like(fw.platformStatus(), { state: PSTATE.WORKING, guestCount: 1 });
  expectStatus(t, fw.init({ es: false }), SEV_RET.INVALID_PLATFORM_STATE, 'INIT in WORKING');
  expectStatus(t, fw.shutdown(), SEV_RET.SUCCESS);
  t.like(fw.platformStatus(), { state: PSTATE.UNINIT, guestCount: 0 });
  expectStatus(t, fw.shutdown(), SEV_RET.SUCCESS, 'SHUTDOWN in UNINIT');
  t.is(fw.init({ es: false }).status, 0);
  t.like(fw.guestStatus(g.handle), { status: 0, state: GSTATE.UNINIT }, 'SHUTDOWN decommissioned the guest');
  t.is(fw.platformStatus().guestCount, 0);
});

test('INIT with the ES flag: config bit 0; hidden in UNINIT; a part without SEV-ES answers INVALID_CONFIG', (t) => {
  const fw = firmware();
  t.is(fw.init({ es: true }).status, 0);
  t.like(fw.platformStatus(), { state: PSTATE.INIT, config: 1 });
  t.is(fw.shutdown().status, 0);
  t.like(fw.platformStatus(), { config: 0 });
  t.is(fw.init({ es: false }).status, 0);
  t.like(fw.platformStatus(), { config: 0 });

  const naples = new MockFirmware({ profile: NAPLES, memory: new CiphertextMemory(), root: root() });
  expectStatus(t, naples.init({ es: true }), SEV_RET.INVALID_CONFIG);
  t.is(naples.platformStatus().state, PSTATE.UNINIT);
  t.is(naples.init({ es: false }).status, 0);
  t.like(naples.platformStatus(), { apiMajor: 0, apiMinor: 17, build: 48 });
});

type State = 'UNINIT' | 'INIT' | 'WORKING';
function inState(s: State): { fw: MockFirmware; handle: number } {
  const fw = firmware();
  if (s === 'UNINIT') return { fw, handle: 1 };
  t_ok(fw.init({ es: false }));
  if (s === 'INIT') return { fw, handle: 1 };
  const r = fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null });
  t_ok(r);
  return { fw, handle: r.handle };
}
function t_ok(r: { status: number }): void {
  if (r.status !== 0) throw new Error(`set-up failed: ${st(r)}`);
}

const rng = { paddr: 0x1000n, bytes: new Uint8Array(16) };
const COMMANDS: Record<string, { allowed: State[]; run: (fw: MockFirmware, h: number) => { status: number } }> = {
  FACTORY_RESET: { allowed: ['UNINIT'], run: (fw) => fw.factoryReset() },
  PLATFORM_STATUS: { allowed: ['UNINIT', 'INIT', 'WORKING'], run: (fw) => fw.platformStatus() },
  PEK_GEN: { allowed: ['INIT'], run: (fw) => fw.pekGen() },
  PEK_CSR: { allowed: ['INIT', 'WORKING'], run: (fw) => fw.pekCsr(0x824) },
  PEK_CERT_IMPORT: { allowed: ['INIT'], run: (fw) => fw.pekCertImport(new Uint8Array(0x824), new Uint8Array(0x824)) },
  PDH_CERT_EXPORT: { allowed: ['INIT', 'WORKING'], run: (fw) => fw.pdhCertExport(0x824, 0x186c) },
  PDH_GEN: { allowed: ['INIT', 'WORKING'], run: (fw) => fw.pdhGen() },
  DF_FLUSH: { allowed: ['UNINIT', 'INIT', 'WORKING'], run: (fw) => fw.dfFlush() },
  GET_ID: { allowed: ['UNINIT', 'INIT', 'WORKING'], run: (fw) => fw.getId(64) },
  GUEST_STATUS: { allowed: ['INIT', 'WORKING'], run: (fw, h) => fw.guestStatus(h) },
  LAUNCH_START: { allowed: ['INIT', 'WORKING'], run: (fw) => fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null }) },
  RECEIVE_START: {
    allowed: ['INIT', 'WORKING'],
    run: (fw) => fw.receiveStart({ handle: 0, policy: 0, pdhCert: new Uint8Array(0x824), session: new Uint8Array(0) }),
  },
  DECOMMISSION: { allowed: ['WORKING'], run: (fw, h) => fw.decommission(h) },
  ACTIVATE: { allowed: ['WORKING'], run: (fw, h) => fw.activate(h, 100) },
  DEACTIVATE: { allowed: ['WORKING'], run: (fw, h) => fw.deactivate(h) },
  LAUNCH_UPDATE_DATA: { allowed: ['WORKING'], run: (fw, h) => fw.launchUpdateData(h, rng) },
  LAUNCH_MEASURE: { allowed: ['WORKING'], run: (fw, h) => fw.launchMeasure(h, 48) },
  LAUNCH_SECRET: {
    allowed: ['WORKING'],
    run: (fw, h) => fw.launchSecret(h, { header: new Uint8Array(52), guest: rng, trans: new Uint8Array(16) }),
  },
  LAUNCH_FINISH: { allowed: ['WORKING'], run: (fw, h) => fw.launchFinish(h) },
  ATTESTATION: { allowed: ['WORKING'], run: (fw, h) => fw.attestation(h, new Uint8Array(16), 0xd0) },
  SEND_START: {
    allowed: ['WORKING'],
    run: (fw, h) =>
      fw.sendStart(h, { pdhCert: new Uint8Array(0x824), platCerts: new Uint8Array(0), amdCerts: new Uint8Array(0), sessionCapacity: 128 }),
  },
  SEND_UPDATE_DATA: { allowed: ['WORKING'], run: (fw, h) => fw.sendUpdateData(h, { guest: rng, hdrCapacity: 52, transCapacity: 16 }) },
  SEND_FINISH: { allowed: ['WORKING'], run: (fw, h) => fw.sendFinish(h) },
  SEND_CANCEL: { allowed: ['WORKING'], run: (fw, h) => fw.sendCancel(h) },
  RECEIVE_UPDATE_DATA: {
    allowed: ['WORKING'],
    run: (fw, h) => fw.receiveUpdateData(h, { header: new Uint8Array(52), guest: rng, trans: new Uint8Array(16) }),
  },
  RECEIVE_FINISH: { allowed: ['WORKING'], run: (fw, h) => fw.receiveFinish(h) },
  DBG_DECRYPT: { allowed: ['WORKING'], run: (fw, h) => fw.dbgDecrypt(h, rng, { paddr: 0x2000n, bytes: new Uint8Array(16) }) },
  DBG_ENCRYPT: { allowed: ['WORKING'], run: (fw, h) => fw.dbgEncrypt(h, { paddr: 0x2000n, bytes: new Uint8Array(16) }, rng) },
};

test('every command checks the platform state first (§2.1 command/state table)', (t) => {
  for (const [name, cmd] of Object.entries(COMMANDS)) {
    for (const s of ['UNINIT', 'INIT', 'WORKING'] as const) {
      const { fw, handle } = inState(s);
      const r = cmd.run(fw, handle);
      if (cmd.allowed.includes(s)) t.not(r.status, SEV_RET.INVALID_PLATFORM_STATE, `${name} in ${s}`);
      else expectStatus(t, r, SEV_RET.INVALID_PLATFORM_STATE, `${name} in ${s}`);
    }
  }
});

test('length queries: PEK_CSR, PDH_CERT_EXPORT, GET_ID answer INVALID_LEN with the required length', (t) => {
  const fw = ready();
  t.deepEqual(fw.pekCsr(0), { status: SEV_RET.INVALID_LEN, length: 0x824 });
  t.deepEqual(fw.pekCsr(0x823), { status: SEV_RET.INVALID_LEN, length: 0x824 });
  const csr = fw.pekCsr(0x1000);
  t.is(csr.status, 0);
  t.is(csr.length, 0x824);
  const csrCert = parseSevCert(csr.data!);
  const pek = exportChain(fw).pek;
  t.deepEqual(serializeSevCert({ ...csrCert }).subarray(0, 0x414), serializeSevCert(pek).subarray(0, 0x414), 'PEK body');
  t.deepEqual(
    [csrCert.sig1.usage, csrCert.sig1.algo, csrCert.sig2.usage, csrCert.sig2.algo],
    [SevUsage.INVALID, 0, SevUsage.INVALID, 0],
    'no signatures',
  );

  t.deepEqual(fw.pdhCertExport(0, 0), { status: SEV_RET.INVALID_LEN, pdhLength: 0x824, certsLength: 0x186c });
  t.like(fw.pdhCertExport(0x824, 0x186b), { status: SEV_RET.INVALID_LEN, pdhLength: 0x824, certsLength: 0x186c });
  t.like(fw.pdhCertExport(0x823, 0x186c), { status: SEV_RET.INVALID_LEN });
  const ex = fw.pdhCertExport(0x2000, 0x2000);
  t.like(ex, { status: 0, pdhLength: 0x824, certsLength: 0x186c });
  t.is(ex.pdh!.length, 0x824);
  t.is(ex.certs!.length, 0x186c);

  t.deepEqual(fw.getId(0), { status: SEV_RET.INVALID_LEN, length: 64 });
  t.deepEqual(fw.getId(63), { status: SEV_RET.INVALID_LEN, length: 64 });
  t.is(fw.getId(64).data!.length, 64);
  const two = firmware({ sockets: 2 });
  t.deepEqual(two.getId(64), { status: SEV_RET.INVALID_LEN, length: 128 }, 'GET_ID works in UNINIT, 64 bytes per socket');
  const ids = two.getId(128).data!;
  t.notDeepEqual(ids.subarray(0, 64), ids.subarray(64));
});

test('GET_ID is derived from the chip key', (t) => {
  const key = Buffer.alloc(32, 0x5a);
  const a = firmware({ chipKey: key }).getId(64).data!;
  const b = firmware({ chipKey: Buffer.from(key) }).getId(64).data!;
  const c = firmware({ chipKey: Buffer.alloc(32, 0x5b) }).getId(64).data!;
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  t.false(Buffer.from(a).equals(Buffer.alloc(64)));
});

test('the CEK is derived from the chip key and signed by the mock ASK', (t) => {
  const key = Buffer.alloc(32, 7);
  const a = ready({ chipKey: key });
  const b = ready({ chipKey: key });
  const cekA = exportChain(a).cek;
  t.deepEqual(cekA.pubKey, exportChain(b).cek.pubKey);
  t.true(verifySevCert(cekA, root().ask).ok);
  t.notDeepEqual(exportChain(a).pek.pubKey, exportChain(b).pek.pubKey, 'PEKs are random per chip');
});

test('INIT generates the chain, a mock chain verifies like an AMD one (PDH_CERT_EXPORT + mock root)', (t) => {
  const fw = ready();
  const c = exportChain(fw);
  const v = verifyChain({ ...c, extraRoots: extraRoots() });
  t.is(v.generation, undefined);
  t.deepEqual([c.pdh.pubKeyUsage, c.pdh.pubKeyAlgo, c.pdh.apiMajor, c.pdh.apiMinor], [SevUsage.PDH, SevAlgo.ECDH_SHA256, 0, 24]);
  t.deepEqual([c.pek.sig1.usage, c.pek.sig2.usage], [SevUsage.OCA, SevUsage.CEK]);
  t.throws(() => verifyChain({ ...c, pdh: exportChain(ready()).pdh, extraRoots: extraRoots() }), { name: 'SevChainError' });
});

test('PEK_GEN: new OCA, PEK and PDH, self-owned; PDH_GEN: new PDH only', (t) => {
  const fw = ready();
  const before = exportChain(fw);
  t.is(fw.pdhGen().status, 0);
  const afterPdh = exportChain(fw);
  t.notDeepEqual(afterPdh.pdh.pubKey, before.pdh.pubKey);
  t.deepEqual(afterPdh.pek, before.pek);
  t.true(verifySevCert(afterPdh.pdh, afterPdh.pek).ok);
  t.is(fw.pekGen().status, 0);
  const after = exportChain(fw);
  t.notDeepEqual(after.oca.pubKey, before.oca.pubKey);
  t.notDeepEqual(after.pek.pubKey, before.pek.pubKey);
  t.notDeepEqual(after.pdh.pubKey, afterPdh.pdh.pubKey);
  t.notThrows(() => verifyChain({ ...after, extraRoots: extraRoots() }));
  t.is(fw.platformStatus().owner, 0);
  // PDH_GEN works in WORKING, PEK_GEN does not.
  launch(fw, 0, { session: false });
  t.is(fw.pdhGen().status, 0);
  expectStatus(t, fw.pekGen(), SEV_RET.INVALID_PLATFORM_STATE);
});

test('persistent keys survive SHUTDOWN; regeneratePdhOnInit; PLATFORM_RESET deletes them', (t) => {
  const fw = ready();
  const a = exportChain(fw);
  t.is(fw.shutdown().status, 0);
  t.is(fw.init({ es: false }).status, 0);
  t.deepEqual(exportChain(fw), a, 'INIT keeps OCA, PEK and PDH');

  const regen = ready({ regeneratePdhOnInit: true });
  const r1 = exportChain(regen);
  t.is(regen.shutdown().status, 0);
  t.is(regen.init({ es: false }).status, 0);
  const r2 = exportChain(regen);
  t.deepEqual(r2.pek, r1.pek);
  t.notDeepEqual(r2.pdh.pubKey, r1.pdh.pubKey);

  t.is(fw.shutdown().status, 0);
  t.is(fw.factoryReset().status, 0);
  t.is(fw.init({ es: false }).status, 0);
  const b = exportChain(fw);
  t.notDeepEqual(b.oca.pubKey, a.oca.pubKey);
  t.notDeepEqual(b.pek.pubKey, a.pek.pubKey);
  t.deepEqual(b.cek, a.cek, 'the CEK is not persistent state: it comes from the chip key');
});

/** An owner CA: its own OCA, and the CSR signed by it. */
function ownerSigned(fw: MockFirmware): { oca: SevCertificate; pek: SevCertificate; key: ReturnType<typeof generateP384>['privateKey'] } {
  const key = generateP384().privateKey;
  const oca = mintOca({ ocaKey: key, apiMajor: 0, apiMinor: 24 });
  const csr = parseSevCert(fw.pekCsr(0x824).data!);
  return { oca, pek: signSevCert(csr, key, SevUsage.OCA, { slot: 1 }), key };
}

test('PEK_CERT_IMPORT: the owner-signed PEK and OCA are adopted, the CEK signature carried over, a new PDH made', (t) => {
  const fw = ready();
  const before = exportChain(fw);
  const o = ownerSigned(fw);
  expectStatus(t, fw.pekCertImport(serializeSevCert(o.pek), serializeSevCert(o.oca)), SEV_RET.SUCCESS);
  t.is(fw.platformStatus().owner, 1);
  const after = exportChain(fw);
  t.deepEqual(after.oca, o.oca);
  t.deepEqual(serializeSevCert(after.pek).subarray(0, 0x414), serializeSevCert(before.pek).subarray(0, 0x414));
  t.deepEqual([after.pek.sig1.usage, after.pek.sig2.usage], [SevUsage.OCA, SevUsage.CEK]);
  t.deepEqual(after.pek.sig2, before.pek.sig2, 'CEK signature carried over');
  t.true(verifySevCert(after.pek, o.oca).ok);
  t.true(verifySevCert(after.pek, after.cek).ok);
  t.notDeepEqual(after.pdh.pubKey, before.pdh.pubKey);
  t.notThrows(() => verifyChain({ ...after, extraRoots: extraRoots() }));
  expectStatus(t, fw.pekCertImport(new Uint8Array(1), new Uint8Array(1)), SEV_RET.ALREADY_OWNED, 'owned is checked before lengths');
  // Ownership persists across SHUTDOWN, reads 0 in UNINIT, and PEK_GEN takes it back.
  t.is(fw.shutdown().status, 0);
  t.is(fw.platformStatus().owner, 0);
  t.is(fw.init({ es: false }).status, 0);
  t.is(fw.platformStatus().owner, 1);
  t.is(fw.pekGen().status, 0);
  t.is(fw.platformStatus().owner, 0);
});

test('PEK_CERT_IMPORT failures, in the firmware order', (t) => {
  const fw = ready();
  const o = ownerSigned(fw);
  const imp = (pek: SevCertificate | Uint8Array, oca: SevCertificate | Uint8Array): { status: number } =>
    fw.pekCertImport(pek instanceof Uint8Array ? pek : serializeSevCert(pek), oca instanceof Uint8Array ? oca : serializeSevCert(oca));

  expectStatus(t, imp(serializeSevCert(o.pek).subarray(0, 0x823), o.oca), SEV_RET.INVALID_LEN, 'short PEK');
  expectStatus(t, imp(o.pek, Buffer.concat([serializeSevCert(o.oca), Buffer.alloc(1)])), SEV_RET.INVALID_LEN, 'long OCA');

  const badOcaSig = serializeSevCert(o.oca);
  badOcaSig[0x41c + 3]! ^= 1;
  expectStatus(t, imp(o.pek, badOcaSig), SEV_RET.BAD_SIGNATURE, 'OCA self-signature does not verify');

  const otherKey = generateP384().privateKey;
  const notSelf = signSevCert({ ...o.oca, sig1: EMPTY_SLOT }, otherKey, SevUsage.OCA, { slot: 1 });
  expectStatus(t, imp(o.pek, notSelf), SEV_RET.BAD_SIGNATURE, 'OCA signed by another key');

  const malformed = { ...o.oca, sig2: { ...EMPTY_SLOT, usage: SevUsage.PEK } };
  expectStatus(t, imp(o.pek, malformed), SEV_RET.BAD_SIGNATURE, 'malformed slot (usage without algorithm)');

  const unsigned = parseSevCert(fw.pekCsr(0x824).data!);
  expectStatus(t, imp(unsigned, o.oca), SEV_RET.INVALID_CERTIFICATE, 'PEK without an OCA signature');

  const byOther = signSevCert(unsigned, otherKey, SevUsage.OCA, { slot: 1 });
  expectStatus(t, imp(byOther, o.oca), SEV_RET.BAD_SIGNATURE, 'PEK signed by another OCA');

  const foreignPek = signSevCert({ ...exportChain(ready()).pek, sig1: EMPTY_SLOT, sig2: EMPTY_SLOT }, o.key, SevUsage.OCA, { slot: 1 });
  expectStatus(t, imp(foreignPek, o.oca), SEV_RET.INVALID_CERTIFICATE, "PEK body is not this platform's");

  const pekAsOca = mintOca({ ocaKey: o.key });
  const wrongUsage = { ...pekAsOca, pubKeyUsage: SevUsage.PEK };
  expectStatus(
    t,
    imp(o.pek, signSevCert({ ...wrongUsage, sig1: EMPTY_SLOT }, o.key, SevUsage.PEK, { slot: 1 })),
    SEV_RET.INVALID_CERTIFICATE,
    'OCA with PEK usage',
  );

  t.is(fw.platformStatus().owner, 0, 'nothing was imported');
  expectStatus(t, imp(o.pek, o.oca), SEV_RET.SUCCESS);
});

test('DF_FLUSH: dirty ASIDs after INIT and after DEACTIVATE of a guest that ran; WBINVD tracking', (t) => {
  const fw = firmware({ enforceWbinvd: true });
  t.is(fw.init({ es: false }).status, 0);
  const h = fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null }).handle;
  expectStatus(t, fw.activate(h, 120), SEV_RET.DFFLUSH_REQUIRED, 'all ASIDs are dirty after INIT');
  t.is(fw.dfFlush().status, 0);
  t.is(fw.activate(h, 120).status, 0);
  advance(fw, { handle: h, session: null, asid: 120 }, GSTATE.RUNNING);
  t.is(fw.deactivate(h).status, 0);
  expectStatus(t, fw.activate(h, 120), SEV_RET.DFFLUSH_REQUIRED, 'a used ASID is dirty');
  t.is(fw.activate(h, 121).status, 0, 'other ASIDs are clean');
  t.is(fw.deactivate(h).status, 0);
  expectStatus(t, fw.dfFlush(), SEV_RET.WBINVD_REQUIRED);
  expectStatus(t, fw.activate(h, 120), SEV_RET.DFFLUSH_REQUIRED, 'a refused DF_FLUSH cleans nothing');
  fw.wbinvd();
  t.is(fw.dfFlush().status, 0);
  t.is(fw.activate(h, 120).status, 0);

  const lax = ready();
  const g = launch(lax, 0, { session: false });
  advance(lax, g, GSTATE.RUNNING);
  t.is(lax.deactivate(g.handle).status, 0);
  t.is(lax.dfFlush().status, 0, 'without WBINVD tracking DF_FLUSH always succeeds');
  t.is(lax.activate(g.handle, g.asid).status, 0);
});

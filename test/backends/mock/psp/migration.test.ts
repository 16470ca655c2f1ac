/**
 * Mock PSP migration between two MockFirmware instances (different chips, same mock root):
 * SEND_START / SEND_UPDATE / SEND_FINISH / SEND_CANCEL and RECEIVE_* (docs/sev-reference.md §6).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { encodePolicy } from '../../../../lib/owner/index.js';
import {
  EMPTY_SLOT,
  SevUsage,
  generateP384,
  mintAmdRoot,
  mintOca,
  parseSevCert,
  serializeAmdCert,
  serializeSevCert,
  signSevCert,
} from '../../../../lib/crypto/index.js';
import { MILAN, MockFirmware, ROME } from '../../../../lib/backends/mock/psp/index.js';
import { PlaintextMemory } from '../../../../lib/backends/hybrid/common/plaintext-memory.js';
import type { MockFirmwareOptions } from '../../../../lib/backends/mock/psp/index.js';
import { SEV_POLICY } from '../../../../lib/uapi/constants.js';
import { GSTATE, SEV_RET, advance, asid, expectStatus, launch, range, ready, root } from './fixtures.js';

interface Platform {
  fw: MockFirmware;
  pdh: Buffer;
  certs: Buffer;
}

function platform(opts: Partial<MockFirmwareOptions> & { es?: boolean } = {}): Platform {
  const fw = ready({ chipKey: randomBytes(32), ...opts });
  const e = fw.pdhCertExport(0x824, 0x186c);
  return { fw, pdh: Buffer.from(e.pdh!), certs: Buffer.from(e.certs!) };
}

const PAGE = 4096;
const BASE = 0x40000n;

/** A RUNNING guest on `src` with `pages` random pages of private memory. */
function runningGuest(src: MockFirmware, policy: number, pages = 3): { handle: number; mem: Buffer; plain: Buffer } {
  const g = launch(src, policy);
  const plain = randomBytes(pages * PAGE);
  const mem = Buffer.from(plain);
  if (src.launchUpdateData(g.handle, range(BASE, mem)).status !== 0) throw new Error('LAUNCH_UPDATE_DATA failed');
  advance(src, g, GSTATE.RUNNING);
  return { handle: g.handle, mem, plain };
}

function sendStart(src: MockFirmware, h: number, dst: Platform, amd: Uint8Array = dst.fw.amdCerts()) {
  return src.sendStart(h, { pdhCert: dst.pdh, platCerts: dst.certs, amdCerts: amd, sessionCapacity: 128 });
}

/** Full migration; returns the target handle and memory. */
function migrate(src: Platform, dst: Platform, g: { handle: number; mem: Buffer }, pages: number): { handle: number; mem: Buffer } {
  const s = sendStart(src.fw, g.handle, dst);
  if (s.status !== 0) throw new Error(`SEND_START: ${s.status}`);
  const r = dst.fw.receiveStart({ handle: 0, policy: s.policy, pdhCert: src.pdh, session: s.session! });
  if (r.status !== 0) throw new Error(`RECEIVE_START: ${r.status}`);
  if (dst.fw.activate(r.handle, asid()).status !== 0) throw new Error('ACTIVATE');
  const mem = Buffer.alloc(pages * PAGE);
  for (let p = 0; p < pages; p++) {
    const paddr = BASE + BigInt(p * PAGE);
    const out = src.fw.sendUpdateData(g.handle, {
      guest: range(paddr, g.mem.subarray(p * PAGE, (p + 1) * PAGE)),
      hdrCapacity: 52,
      transCapacity: PAGE,
    });
    if (out.status !== 0) throw new Error(`SEND_UPDATE_DATA: ${out.status}`);
    const rr = dst.fw.receiveUpdateData(r.handle, {
      header: out.header!,
      guest: range(paddr, mem.subarray(p * PAGE, (p + 1) * PAGE)),
      trans: out.trans!,
    });
    if (rr.status !== 0) throw new Error(`RECEIVE_UPDATE_DATA: ${rr.status}`);
  }
  if (src.fw.sendFinish(g.handle).status !== 0 || dst.fw.receiveFinish(r.handle).status !== 0) throw new Error('FINISH');
  return { handle: r.handle, mem };
}

function decrypt(fw: MockFirmware, handle: number, mem: Buffer, paddr = BASE): Buffer {
  const out = range(0x10000000n, new Uint8Array(mem.length));
  const r = fw.dbgDecrypt(handle, range(paddr, mem), out);
  if (r.status !== 0) throw new Error(`DBG_DECRYPT: ${r.status}`);
  return Buffer.from(out.bytes);
}

test('a guest migrates between two chips: its pages arrive and decrypt on the target under a new VEK', (t) => {
  const src = platform();
  const dst = platform();
  t.notDeepEqual(src.pdh, dst.pdh);
  const policy = SEV_POLICY.SEV | SEV_POLICY.NOKS;
  const g = runningGuest(src.fw, policy);
  t.notDeepEqual(g.mem, g.plain);
  const moved = migrate(src, dst, g, 3);
  t.deepEqual(decrypt(dst.fw, moved.handle, moved.mem), g.plain);
  t.notDeepEqual(moved.mem, g.mem, 'the target encrypts with its own VEK');
  t.notDeepEqual(moved.mem, g.plain);
  t.like(dst.fw.guestStatus(moved.handle), { state: GSTATE.RUNNING, policy });
  t.not(dst.fw.guestStatus(moved.handle).asid, 0);
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.SENT);
  t.is(src.fw.attestation(g.handle, new Uint8Array(16), 0xd0).status, 0, 'a SENT guest can still be attested');
});

test('migration into the hybrid: the target memory holds plaintext, its host view ciphertext', (t) => {
  const src = platform();
  const hy = new PlaintextMemory();
  const dst = platform({ memory: hy });
  const g = runningGuest(src.fw, 0, 2);
  const moved = migrate(src, dst, g, 2);
  t.deepEqual(moved.mem, g.plain);
  const view = Buffer.from(hy.hostView(range(BASE, moved.mem)));
  t.notDeepEqual(view, g.plain);
  t.deepEqual(decrypt(dst.fw, moved.handle, moved.mem), g.plain);
});

test('SEND_START: session length query (exactly 128); receiver PDH checks without SEV/DOMAIN policy', (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, 0, 1);
  const q = src.fw.sendStart(g.handle, { pdhCert: dst.pdh, platCerts: dst.certs, amdCerts: new Uint8Array(0), sessionCapacity: 0 });
  t.like(q, { status: SEV_RET.INVALID_LEN, sessionLength: 128 });
  t.is(q.session, undefined);
  expectStatus(
    t,
    src.fw.sendStart(g.handle, { pdhCert: dst.pdh, platCerts: dst.certs, amdCerts: new Uint8Array(0), sessionCapacity: 256 }),
    SEV_RET.INVALID_LEN,
    'exactly 128',
  );
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.RUNNING);
  const send = (pdhCert: Uint8Array): { status: number } =>
    src.fw.sendStart(g.handle, { pdhCert, platCerts: new Uint8Array(0), amdCerts: new Uint8Array(0), sessionCapacity: 128 });
  expectStatus(t, send(dst.pdh.subarray(1)), SEV_RET.INVALID_LEN);
  expectStatus(t, send(dst.certs.subarray(0, 0x824)), SEV_RET.INVALID_CERTIFICATE, 'a PEK is not a PDH');
  t.is(send(dst.pdh).status, 0, 'without SEV/DOMAIN any well-formed PDH is accepted');
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.SUPDATE);
});

test("SEV policy bit: the receiver chain must verify to this chip's root, and its API meet the policy minimum", async (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, SEV_POLICY.SEV, 1);
  const send = (over: Partial<{ pdhCert: Uint8Array; platCerts: Uint8Array; amdCerts: Uint8Array }>): { status: number } =>
    src.fw.sendStart(g.handle, { pdhCert: dst.pdh, platCerts: dst.certs, amdCerts: dst.fw.amdCerts(), sessionCapacity: 128, ...over });
  expectStatus(t, send({ platCerts: new Uint8Array(0) }), SEV_RET.INVALID_LEN, 'PEK ‖ OCA ‖ CEK missing');
  expectStatus(t, send({ amdCerts: dst.fw.amdCerts().subarray(1) }), SEV_RET.INVALID_LEN, 'ASK ‖ ARK length');
  const other = await mintAmdRoot({ bits: 2048, cacheName: 'migration-other-root' });
  const foreign = platform({ root: other });
  expectStatus(
    t,
    src.fw.sendStart(g.handle, { pdhCert: foreign.pdh, platCerts: foreign.certs, amdCerts: foreign.fw.amdCerts(), sessionCapacity: 128 }),
    SEV_RET.INVALID_CERTIFICATE,
    'another root',
  );
  expectStatus(
    t,
    send({ amdCerts: Buffer.concat([serializeAmdCert(other.ask), serializeAmdCert(root().ark)]) }),
    SEV_RET.INVALID_CERTIFICATE,
    'ASK of another ARK',
  );
  const ask = serializeAmdCert(root().ask);
  ask[ask.length - 7]! ^= 1;
  expectStatus(t, send({ amdCerts: Buffer.concat([ask, serializeAmdCert(root().ark)]) }), SEV_RET.BAD_SIGNATURE, 'ASK signature broken');
  const certs = Buffer.from(dst.certs);
  certs[0x624 + 5]! ^= 1; // PEK's CEK signature (slot 2)
  expectStatus(t, send({ platCerts: certs }), SEV_RET.BAD_SIGNATURE, 'PEK not signed by the CEK');
  expectStatus(t, send({ pdhCert: platform().pdh }), SEV_RET.BAD_SIGNATURE, 'PDH of another platform');
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.RUNNING);
  t.is(send({}).status, 0);

  // API minimum: a Milan guest requiring 1.0 cannot go to a Rome (0.24) receiver.
  const milan = platform({ profile: MILAN });
  const policy = SEV_POLICY.SEV | encodePolicy({ apiMajor: 1, apiMinor: 0 });
  const mg = runningGuest(milan.fw, policy, 1);
  expectStatus(t, sendStart(milan.fw, mg.handle, dst), SEV_RET.POLICY_FAILURE);
  t.is(sendStart(milan.fw, mg.handle, platform({ profile: MILAN })).status, 0);
});

test("DOMAIN policy bit: the receiver must share this platform's OCA (PEK_CERT_IMPORT by one owner)", (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, SEV_POLICY.DOMAIN, 1);
  expectStatus(t, sendStart(src.fw, g.handle, dst), SEV_RET.POLICY_FAILURE, 'self-owned platforms have different OCAs');
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.RUNNING);

  // One owner signs both platforms' PEKs (PEK_CERT_IMPORT needs PSTATE INIT).
  const ocaKey = generateP384().privateKey;
  const oca = mintOca({ ocaKey, apiMajor: 0, apiMinor: 24 });
  const adopt = (p: Platform): Platform => {
    const csr = parseSevCert(p.fw.pekCsr(0x824).data!);
    const pek = signSevCert(csr, ocaKey, SevUsage.OCA, { slot: 1 });
    if (p.fw.pekCertImport(serializeSevCert(pek), serializeSevCert(oca)).status !== 0) throw new Error('PEK_CERT_IMPORT');
    const e = p.fw.pdhCertExport(0x824, 0x186c);
    return { fw: p.fw, pdh: Buffer.from(e.pdh!), certs: Buffer.from(e.certs!) };
  };
  const a = adopt(platform());
  const b = adopt(platform());
  const ag = runningGuest(a.fw, SEV_POLICY.DOMAIN | SEV_POLICY.SEV, 2);
  const tampered = Buffer.from(b.certs);
  tampered[0x41c + 3]! ^= 1; // PEK's OCA signature (slot 1)
  expectStatus(
    t,
    a.fw.sendStart(ag.handle, { pdhCert: b.pdh, platCerts: tampered, amdCerts: b.fw.amdCerts(), sessionCapacity: 128 }),
    SEV_RET.BAD_SIGNATURE,
  );
  const moved = migrate(a, b, ag, 2);
  t.deepEqual(decrypt(b.fw, moved.handle, moved.mem), ag.plain);
  const notOwned = {
    ...dst,
    certs: Buffer.concat([dst.certs.subarray(0, 0x824), serializeSevCert({ ...oca, sig1: EMPTY_SLOT }), dst.certs.subarray(0x1048)]),
  };
  const ag2 = runningGuest(a.fw, SEV_POLICY.DOMAIN, 1);
  expectStatus(t, sendStart(a.fw, ag2.handle, notOwned), SEV_RET.INVALID_CERTIFICATE, 'unsigned OCA');
});

test('SEND_UPDATE_DATA: length query before the handle, length and alignment rules', (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, 0, 2);
  const page = (off = 0, len = PAGE, paddr = BASE): { paddr: bigint; bytes: Uint8Array } => range(paddr, g.mem.subarray(off, off + len));
  t.deepEqual(src.fw.sendUpdateData(999, { guest: page(), hdrCapacity: 0, transCapacity: 0 }), {
    status: SEV_RET.INVALID_LEN,
    hdrLength: 52,
    transLength: PAGE,
  });
  t.is(sendStart(src.fw, g.handle, dst).status, 0);
  expectStatus(t, src.fw.sendUpdateData(999, { guest: page(), hdrCapacity: 52, transCapacity: PAGE }), SEV_RET.INVALID_GUEST);
  t.like(src.fw.sendUpdateData(g.handle, { guest: page(), hdrCapacity: 52, transCapacity: PAGE - 16 }), {
    status: SEV_RET.INVALID_LEN,
    hdrLength: 52,
    transLength: PAGE,
  });
  expectStatus(t, src.fw.sendUpdateData(g.handle, { guest: page(0, 24), hdrCapacity: 52, transCapacity: PAGE }), SEV_RET.INVALID_LEN);
  expectStatus(
    t,
    src.fw.sendUpdateData(g.handle, { guest: range(BASE, new Uint8Array(0x5010)), hdrCapacity: 52, transCapacity: 0x6000 }),
    SEV_RET.INVALID_LEN,
  );
  expectStatus(
    t,
    src.fw.sendUpdateData(g.handle, { guest: page(8, 32, BASE + 8n), hdrCapacity: 52, transCapacity: PAGE }),
    SEV_RET.INVALID_ADDRESS,
  );
  const ok = src.fw.sendUpdateData(g.handle, { guest: page(0, 2 * PAGE), hdrCapacity: 100, transCapacity: 0x5000 });
  t.like(ok, { status: 0, hdrLength: 52, transLength: 2 * PAGE });
  t.is(ok.header!.length, 52);
  t.is(ok.trans!.length, 2 * PAGE);
  t.notDeepEqual(Buffer.from(ok.trans!), g.plain.subarray(0, 2 * PAGE));
  t.notDeepEqual(Buffer.from(ok.trans!), g.mem.subarray(0, 2 * PAGE), 'transport encryption, not the memory ciphertext');
  const again = src.fw.sendUpdateData(g.handle, { guest: page(0, 2 * PAGE), hdrCapacity: 52, transCapacity: 0x5000 });
  t.notDeepEqual(Buffer.from(again.header!), Buffer.from(ok.header!), 'a fresh IV per packet');
});

test('RECEIVE_UPDATE_DATA: a tampered packet is BAD_MEASUREMENT; COMPRESSED is UNSUPPORTED; lengths and alignment', (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, 0, 1);
  const s = sendStart(src.fw, g.handle, dst);
  const r = dst.fw.receiveStart({ handle: 0, policy: s.policy, pdhCert: src.pdh, session: s.session! });
  t.is(r.status, 0);
  const pkt = src.fw.sendUpdateData(g.handle, { guest: range(BASE, g.mem), hdrCapacity: 52, transCapacity: PAGE });
  const recv = (header: Uint8Array, trans: Uint8Array, paddr = BASE, len = PAGE): { status: number } =>
    dst.fw.receiveUpdateData(r.handle, { header, guest: range(paddr, new Uint8Array(len)), trans });
  expectStatus(t, recv(pkt.header!, pkt.trans!), SEV_RET.INACTIVE);
  t.is(dst.fw.activate(r.handle, 460).status, 0);
  expectStatus(t, recv(pkt.header!, pkt.trans!, BASE, PAGE - 16), SEV_RET.INVALID_LEN, 'guest_len ≠ trans_len');
  expectStatus(t, recv(pkt.header!.subarray(0, 51), pkt.trans!), SEV_RET.INVALID_LEN, 'short header');
  expectStatus(t, recv(pkt.header!, pkt.trans!, BASE + 4n), SEV_RET.INVALID_ADDRESS);
  const flip = (b: Uint8Array, i: number): Buffer => {
    const c = Buffer.from(b);
    c[i]! ^= 1;
    return c;
  };
  expectStatus(t, recv(pkt.header!, flip(pkt.trans!, 100)), SEV_RET.BAD_MEASUREMENT, 'ciphertext');
  expectStatus(t, recv(flip(pkt.header!, 4), pkt.trans!), SEV_RET.BAD_MEASUREMENT, 'IV');
  expectStatus(t, recv(flip(pkt.header!, 40), pkt.trans!), SEV_RET.BAD_MEASUREMENT, 'MAC');
  expectStatus(t, recv(flip(pkt.header!, 0), pkt.trans!), SEV_RET.UNSUPPORTED, 'COMPRESSED (checked before the MAC)');
  const dstMem = range(BASE, new Uint8Array(PAGE));
  t.is(
    dst.fw.receiveUpdateData(r.handle, { header: Buffer.concat([pkt.header!, Buffer.alloc(8)]), guest: dstMem, trans: pkt.trans! }).status,
    0,
    'a longer header buffer is fine',
  );
  t.deepEqual(decrypt(dst.fw, r.handle, Buffer.from(dstMem.bytes)), g.plain);
  // A packet of another migration does not verify under this channel.
  const src2 = platform();
  const g2 = runningGuest(src2.fw, 0, 1);
  t.is(sendStart(src2.fw, g2.handle, dst).status, 0);
  const foreign = src2.fw.sendUpdateData(g2.handle, { guest: range(BASE, g2.mem), hdrCapacity: 52, transCapacity: PAGE });
  expectStatus(t, recv(foreign.header!, foreign.trans!), SEV_RET.BAD_MEASUREMENT);
});

test("RECEIVE_START: the session must come from the sender's PDH and match the policy", (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, SEV_POLICY.NOKS, 1);
  const s = sendStart(src.fw, g.handle, dst);
  const recv = (over: Partial<{ policy: number; pdhCert: Uint8Array; session: Uint8Array }>): { status: number } =>
    dst.fw.receiveStart({ handle: 0, policy: s.policy, pdhCert: src.pdh, session: s.session!, ...over });
  const bad = Buffer.from(s.session!);
  bad[0x50]! ^= 1;
  expectStatus(t, recv({ session: bad }), SEV_RET.BAD_MEASUREMENT, 'WRAP_MAC');
  expectStatus(t, recv({ policy: 0 }), SEV_RET.BAD_MEASUREMENT, 'policy');
  expectStatus(t, recv({ pdhCert: platform().pdh }), SEV_RET.BAD_MEASUREMENT, 'another sender');
  expectStatus(t, recv({ session: s.session!.subarray(0, 64) }), SEV_RET.INVALID_LEN);
  expectStatus(t, recv({ pdhCert: src.certs.subarray(0, 0x824) }), SEV_RET.INVALID_CERTIFICATE, 'a PEK as sender PDH');
  t.is(dst.fw.platformStatus().guestCount, 0);
  const ok = recv({});
  t.is(ok.status, 0);
  t.is(dst.fw.platformStatus().state, 2);
});

test('SEND_CANCEL returns to RUNNING and wipes the channel; a new SEND_START works', (t) => {
  const src = platform();
  const dst = platform();
  const g = runningGuest(src.fw, 0, 1);
  t.is(sendStart(src.fw, g.handle, dst).status, 0);
  t.is(src.fw.sendCancel(g.handle).status, 0);
  t.is(src.fw.guestStatus(g.handle).state, GSTATE.RUNNING);
  expectStatus(
    t,
    src.fw.sendUpdateData(g.handle, { guest: range(BASE, g.mem), hdrCapacity: 52, transCapacity: PAGE }),
    SEV_RET.INVALID_GUEST_STATE,
  );
  const moved = migrate(src, dst, g, 1);
  t.deepEqual(decrypt(dst.fw, moved.handle, moved.mem), g.plain);
});

test('SEV-ES: VMSA pages migrate with SEND/RECEIVE_UPDATE_VMSA; the MAC context byte is configurable (0x02 default, 0x03)', (t) => {
  for (const [sctx, dctx, ok] of [
    [0x02, 0x02, true],
    [0x03, 0x03, true],
    [0x03, 0x02, false],
  ] as const) {
    const src = platform({ profile: MILAN, es: true, vmsaTransportContext: sctx });
    const dst = platform({ profile: MILAN, es: true, vmsaTransportContext: dctx });
    const g = launch(src.fw, SEV_POLICY.ES, { asid: 9 });
    const vmsa = randomBytes(PAGE);
    const vm = range(0x80000n, Buffer.from(vmsa));
    t.is(src.fw.launchUpdateVmsa(g.handle, vm).status, 0);
    advance(src.fw, g, GSTATE.RUNNING);
    const s = sendStart(src.fw, g.handle, dst);
    const r = dst.fw.receiveStart({ handle: 0, policy: s.policy, pdhCert: src.pdh, session: s.session! });
    t.is(r.status, 0);
    t.is(dst.fw.activate(r.handle, 10).status, 0);
    t.is(src.fw.sendUpdateData(g.handle, { guest: vm, hdrCapacity: 52, transCapacity: PAGE }).status, 0, 'DATA works for an ES guest too');
    const pkt = src.fw.sendUpdateVmsa(g.handle, { guest: vm, hdrCapacity: 52, transCapacity: PAGE });
    t.is(pkt.status, 0);
    const target = range(0x80000n, new Uint8Array(PAGE));
    const res = dst.fw.receiveUpdateVmsa(r.handle, { header: pkt.header!, guest: target, trans: pkt.trans! });
    if (ok) {
      t.is(res.status, 0, `context ${sctx}/${dctx}`);
      t.deepEqual(decrypt(dst.fw, r.handle, Buffer.from(target.bytes), 0x80000n), vmsa);
    } else {
      expectStatus(t, res, SEV_RET.BAD_MEASUREMENT, `context ${sctx}/${dctx}`);
    }
  }
  const rome = platform({ profile: ROME });
  const g = runningGuest(rome.fw, 0, 1);
  t.is(sendStart(rome.fw, g.handle, platform()).status, 0);
  expectStatus(
    t,
    rome.fw.sendUpdateVmsa(g.handle, { guest: range(BASE, g.mem), hdrCapacity: 52, transCapacity: PAGE }),
    SEV_RET.UNSUPPORTED,
    'non-ES guest',
  );
});

/**
 * Mock PSP: the guest state machine (docs/sev-reference.md §2.2), handles, ASID and activation rules,
 * policy enforcement at LAUNCH_START / SEND_START.
 */
import test from 'ava';
import { encodePolicy } from '../../../../lib/owner/index.js';
import { MockFirmware, CiphertextMemory, MAX_GUESTS, MILAN, NAPLES } from '../../../../lib/backends/mock/psp/index.js';
import { PSTATE, SEV_POLICY } from '../../../../lib/uapi/constants.js';
import { GSTATE, SEV_RET, advance, expectStatus, firmware, launch, owner, rawSession, ready, received, root } from './fixtures.js';
import type { Guest } from './fixtures.js';

const STATES = ['LUPDATE', 'LSECRET', 'RUNNING', 'SUPDATE', 'SENT', 'RUPDATE'] as const;
type StateName = (typeof STATES)[number];

/** A fresh firmware with one activated guest in `state`. */
function guestIn(state: StateName, policy = 0): { fw: MockFirmware; g: Guest } {
  const fw = ready();
  if (state === 'RUPDATE') return { fw, g: received(fw, policy) };
  const g = launch(fw, policy);
  advance(fw, g, GSTATE[state]);
  return { fw, g };
}

const page = (paddr = 0x10000n, len = 16): { paddr: bigint; bytes: Uint8Array } => ({ paddr, bytes: new Uint8Array(len) });

const GUEST_COMMANDS: Record<string, { states: StateName[]; run: (fw: MockFirmware, h: number) => { status: number } }> = {
  LAUNCH_UPDATE_DATA: { states: ['LUPDATE'], run: (fw, h) => fw.launchUpdateData(h, page()) },
  LAUNCH_UPDATE_VMSA: { states: ['LUPDATE'], run: (fw, h) => fw.launchUpdateVmsa(h, page(0x20000n, 4096)) },
  LAUNCH_MEASURE: { states: ['LUPDATE'], run: (fw, h) => fw.launchMeasure(h, 48) },
  LAUNCH_SECRET: {
    states: ['LSECRET'],
    run: (fw, h) => fw.launchSecret(h, { header: new Uint8Array(52), guest: page(), trans: new Uint8Array(16) }),
  },
  LAUNCH_FINISH: { states: ['LSECRET'], run: (fw, h) => fw.launchFinish(h) },
  ATTESTATION: { states: ['LSECRET', 'RUNNING', 'SUPDATE', 'SENT'], run: (fw, h) => fw.attestation(h, new Uint8Array(16), 0xd0) },
  SEND_START: {
    states: ['RUNNING'],
    run: (fw, h) =>
      fw.sendStart(h, {
        pdhCert: fw.pdhCertExport(0x824, 0x186c).pdh!,
        platCerts: new Uint8Array(0),
        amdCerts: new Uint8Array(0),
        sessionCapacity: 128,
      }),
  },
  SEND_UPDATE_DATA: { states: ['SUPDATE'], run: (fw, h) => fw.sendUpdateData(h, { guest: page(), hdrCapacity: 52, transCapacity: 16 }) },
  SEND_FINISH: { states: ['SUPDATE'], run: (fw, h) => fw.sendFinish(h) },
  SEND_CANCEL: { states: ['SUPDATE'], run: (fw, h) => fw.sendCancel(h) },
  RECEIVE_UPDATE_DATA: {
    states: ['RUPDATE'],
    run: (fw, h) => fw.receiveUpdateData(h, { header: new Uint8Array(52), guest: page(), trans: new Uint8Array(16) }),
  },
  RECEIVE_FINISH: { states: ['RUPDATE'], run: (fw, h) => fw.receiveFinish(h) },
};

test('every state-bound guest command in every wrong state answers INVALID_GUEST_STATE', (t) => {
  let checked = 0;
  for (const [name, cmd] of Object.entries(GUEST_COMMANDS)) {
    for (const s of STATES) {
      const { fw, g } = guestIn(s);
      const r = cmd.run(fw, g.handle);
      if (cmd.states.includes(s)) t.not(r.status, SEV_RET.INVALID_GUEST_STATE, `${name} in ${s}`);
      else {
        expectStatus(t, r, SEV_RET.INVALID_GUEST_STATE, `${name} in ${s}`);
        t.is(fw.guestStatus(g.handle).state, GSTATE[s], `${name} in ${s} left the state alone`);
        checked++;
      }
    }
  }
  t.is(checked, 12 * 6 - 15);
});

test('the GSTATE transitions: launch, send/cancel/finish, receive', (t) => {
  const fw = ready();
  const g = launch(fw);
  const state = (): number => fw.guestStatus(g.handle).state;
  t.is(state(), GSTATE.LUPDATE);
  t.is(fw.launchMeasure(g.handle, 48).status, 0);
  t.is(state(), GSTATE.LSECRET);
  t.is(fw.launchFinish(g.handle).status, 0);
  t.is(state(), GSTATE.RUNNING);
  advance(fw, g, GSTATE.SUPDATE);
  t.is(state(), GSTATE.SUPDATE);
  t.is(fw.sendCancel(g.handle).status, 0);
  t.is(state(), GSTATE.RUNNING);
  advance(fw, g, GSTATE.SENT);
  t.is(state(), GSTATE.SENT);
  const r = received(fw);
  t.is(fw.guestStatus(r.handle).state, GSTATE.RUPDATE);
  t.is(fw.receiveFinish(r.handle).status, 0);
  t.is(fw.guestStatus(r.handle).state, GSTATE.RUNNING);
});

test('handles: lowest free from 1, up to 1024, then RESOURCE_LIMIT; INVALID_GUEST; GUEST_STATUS of a free handle', (t) => {
  const fw = ready();
  const start = (): { status: number; handle: number } => fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null });
  for (let i = 1; i <= MAX_GUESTS; i++) {
    const r = start();
    if (r.status !== 0 || r.handle !== i) {
      t.fail(`guest ${i}: status ${r.status}, handle ${r.handle}`);
      return;
    }
  }
  t.is(MAX_GUESTS, 1024);
  t.is(fw.platformStatus().guestCount, 1024);
  expectStatus(t, start(), SEV_RET.RESOURCE_LIMIT);
  t.is(fw.decommission(5).status, 0);
  t.is(fw.decommission(700).status, 0);
  t.deepEqual(start(), { status: 0, handle: 5 });
  t.deepEqual(start(), { status: 0, handle: 700 });
  for (const h of [0, 1025, 0xffffffff]) {
    expectStatus(t, fw.activate(h, 100), SEV_RET.INVALID_GUEST, `ACTIVATE ${h}`);
    expectStatus(t, fw.launchMeasure(h, 48), SEV_RET.INVALID_GUEST, `LAUNCH_MEASURE ${h}`);
    t.deepEqual(fw.guestStatus(h), { status: 0, policy: 0, asid: 0, state: 0 });
  }
  t.is(fw.decommission(9).status, 0);
  expectStatus(t, fw.decommission(9), SEV_RET.INVALID_GUEST, 'decommissioned twice');
  t.deepEqual(fw.guestStatus(9), { status: 0, policy: 0, asid: 0, state: 0 });
});

test('GUEST_STATUS reports policy, ASID and state; DECOMMISSION of the last guest returns PSTATE to INIT', (t) => {
  const fw = ready();
  const policy = encodePolicy({ nodbg: true, noks: true });
  const g = launch(fw, policy, { asid: 333 });
  t.deepEqual(fw.guestStatus(g.handle), { status: 0, policy, asid: 333, state: GSTATE.LUPDATE });
  const h2 = launch(fw, 0, { session: false, activate: false }).handle;
  t.like(fw.guestStatus(h2), { asid: 0 });
  expectStatus(t, fw.decommission(g.handle), SEV_RET.ACTIVE, 'activated (pending) guests must be deactivated first');
  t.is(fw.deactivate(g.handle).status, 0);
  t.like(fw.guestStatus(g.handle), { asid: 0, state: GSTATE.LUPDATE });
  t.is(fw.decommission(g.handle).status, 0);
  t.like(fw.platformStatus(), { state: PSTATE.WORKING, guestCount: 1 });
  t.is(fw.decommission(h2).status, 0);
  t.like(fw.platformStatus(), { state: PSTATE.INIT, guestCount: 0 });
  expectStatus(t, fw.activate(1, 100), SEV_RET.INVALID_PLATFORM_STATE);
});

test('ACTIVATE: checks in order INVALID_ASID, ASID_OWNED, ACTIVE, INVALID_GUEST_STATE (SENT), DF_FLUSH_REQUIRED, ES range', (t) => {
  const fw = firmware({ profile: MILAN });
  t.is(fw.init({ es: true }).status, 0);
  const a = fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null }).handle;
  const es = fw.launchStart({ handle: 0, policy: SEV_POLICY.ES, dhCert: null, session: null }).handle;
  expectStatus(t, fw.activate(a, 0), SEV_RET.INVALID_ASID, 'ASID 0');
  expectStatus(t, fw.activate(a, 510), SEV_RET.INVALID_ASID, 'ASID > max');
  expectStatus(t, fw.activate(es, 200), SEV_RET.DFFLUSH_REQUIRED, 'dirty is checked before the ES range');
  t.is(fw.dfFlush().status, 0);
  expectStatus(t, fw.activate(es, 100), SEV_RET.INVALID_ASID, 'ES guest needs ASID < MIN_SEV_ASID');
  expectStatus(t, fw.activate(a, 99), SEV_RET.INVALID_ASID, 'non-ES guest needs ASID >= MIN_SEV_ASID');
  t.is(fw.activate(es, 99).status, 0);
  t.is(fw.activate(a, 509).status, 0);
  expectStatus(t, fw.activate(a, 509), SEV_RET.ASID_OWNED, 'owned is checked before active');
  expectStatus(t, fw.activate(a, 300), SEV_RET.ACTIVE);
  const b = fw.launchStart({ handle: 0, policy: 0, dhCert: null, session: null }).handle;
  expectStatus(t, fw.activate(b, 509), SEV_RET.ASID_OWNED, 'pending activation owns the ASID');
  expectStatus(t, fw.activate(b, 99), SEV_RET.ASID_OWNED);
  t.deepEqual([fw.guestStatus(a).asid, fw.guestStatus(es).asid, fw.guestStatus(b).asid], [509, 99, 0]);

  // SENT: INVALID_GUEST_STATE, after ACTIVE.
  const g = { handle: a, session: null, asid: 509 };
  advance(fw, g, GSTATE.SENT);
  expectStatus(t, fw.activate(a, 300), SEV_RET.ACTIVE);
  t.is(fw.deactivate(a).status, 0);
  expectStatus(t, fw.activate(a, 300), SEV_RET.INVALID_GUEST_STATE);
});

test('activation: pending before RUNNING; DEACTIVATE of a never-run ASID leaves it clean, of a run one dirty', (t) => {
  const fw = ready();
  const g = launch(fw, 0, { session: false, asid: 150 });
  t.is(fw.deactivate(g.handle).status, 0);
  expectStatus(t, fw.deactivate(g.handle), SEV_RET.INACTIVE);
  t.is(fw.activate(g.handle, 150).status, 0, 'a pending ASID goes back clean');
  advance(fw, g, GSTATE.RUNNING);
  t.is(fw.deactivate(g.handle).status, 0);
  expectStatus(t, fw.activate(g.handle, 150), SEV_RET.DFFLUSH_REQUIRED);
  t.is(fw.activate(g.handle, 151).status, 0, 'activation of a RUNNING guest is immediate');
  t.is(fw.deactivate(g.handle).status, 0);
  expectStatus(t, fw.activate(g.handle, 151), SEV_RET.DFFLUSH_REQUIRED, 'it ran, so it is dirty');
});

test('commands that need an activated guest answer INACTIVE; LAUNCH_MEASURE and LAUNCH_FINISH do not need one', (t) => {
  const fw = ready();
  const h = launch(fw, 0, { activate: false }).handle;
  expectStatus(t, fw.launchUpdateData(h, page()), SEV_RET.INACTIVE);
  expectStatus(t, fw.dbgDecrypt(h, page(), page(0x30000n)), SEV_RET.INACTIVE);
  expectStatus(t, fw.dbgEncrypt(h, page(0x30000n), page()), SEV_RET.INACTIVE);
  t.is(fw.launchMeasure(h, 48).status, 0);
  expectStatus(t, fw.launchSecret(h, { header: new Uint8Array(52), guest: page(), trans: new Uint8Array(16) }), SEV_RET.INACTIVE);
  t.is(fw.launchFinish(h).status, 0);
  t.is(fw.activate(h, 200).status, 0);
  advance(fw, { handle: h, session: null, asid: 200 }, GSTATE.SUPDATE);
  t.is(fw.deactivate(h).status, 0);
  expectStatus(t, fw.sendUpdateData(h, { guest: page(), hdrCapacity: 52, transCapacity: 16 }), SEV_RET.INACTIVE);

  const r = fw.receiveStart({
    handle: 0,
    policy: 0,
    ...(() => {
      const s = owner(fw, 0);
      return { pdhCert: s.godhCert, session: s.session };
    })(),
  });
  t.is(r.status, 0);
  expectStatus(
    t,
    fw.receiveUpdateData(r.handle, { header: new Uint8Array(52), guest: page(), trans: new Uint8Array(16) }),
    SEV_RET.INACTIVE,
  );
});

test('key sharing (LAUNCH_START handle ≠ 0): same policy and no NOKS, else POLICY_FAILURE; unknown handle INVALID_GUEST', (t) => {
  const fw = ready();
  const a = launch(fw, 0);
  const nks = launch(fw, SEV_POLICY.NOKS);
  const share = (handle: number, policy: number): { status: number; handle: number } => {
    const s = owner(fw, policy);
    return fw.launchStart({ handle, policy, dhCert: s.godhCert, session: s.session });
  };
  const b = share(a.handle, 0);
  t.is(b.status, 0);
  t.not(b.handle, a.handle);
  expectStatus(t, share(a.handle, SEV_POLICY.NODBG), SEV_RET.POLICY_FAILURE, 'different policy');
  expectStatus(t, share(nks.handle, SEV_POLICY.NOKS), SEV_RET.POLICY_FAILURE, 'NOKS partner');
  expectStatus(t, share(999, 0), SEV_RET.INVALID_GUEST);
  // The session is checked before the partner: a policy that does not match the session MAC is BAD_MEASUREMENT.
  const s = owner(fw, 0);
  expectStatus(t, fw.launchStart({ handle: 999, policy: 1, dhCert: s.godhCert, session: s.session }), SEV_RET.BAD_MEASUREMENT);
  t.is(fw.platformStatus().guestCount, 3, 'failed starts create no guest');
});

test('policy at LAUNCH_START: API minimum and reserved bits (POLICY_FAILURE) are checked with the session; ES needs an ES platform', (t) => {
  const fw = ready();
  const start = (policy: number): { status: number } => {
    const s = rawSession(fw, policy);
    return fw.launchStart({ handle: 0, policy, dhCert: s.godhCert, session: s.session });
  };
  t.is(start(encodePolicy({ apiMajor: 0, apiMinor: 24 })).status, 0, 'Rome is 0.24');
  expectStatus(t, start(encodePolicy({ apiMajor: 0, apiMinor: 25 })), SEV_RET.POLICY_FAILURE);
  expectStatus(t, start(encodePolicy({ apiMajor: 1 })), SEV_RET.POLICY_FAILURE);
  for (const bit of [6, 9, 15]) expectStatus(t, start(1 << bit), SEV_RET.POLICY_FAILURE, `reserved bit ${bit}`);
  t.is(fw.launchStart({ handle: 0, policy: 1 << 6, dhCert: null, session: null }).status, 0, 'without a session the policy is not checked');
  expectStatus(t, start(SEV_POLICY.ES), SEV_RET.UNSUPPORTED, 'platform INIT without ES');

  const milan = ready({ profile: MILAN, es: true });
  const s = rawSession(milan, SEV_POLICY.ES | encodePolicy({ apiMajor: 1, apiMinor: 51 }));
  t.is(
    milan.launchStart({
      handle: 0,
      policy: SEV_POLICY.ES | encodePolicy({ apiMajor: 1, apiMinor: 51 }),
      dhCert: s.godhCert,
      session: s.session,
    }).status,
    0,
  );
  const s2 = rawSession(milan, encodePolicy({ apiMajor: 1, apiMinor: 52 }));
  expectStatus(
    t,
    milan.launchStart({ handle: 0, policy: encodePolicy({ apiMajor: 1, apiMinor: 52 }), dhCert: s2.godhCert, session: s2.session }),
    SEV_RET.POLICY_FAILURE,
  );

  const naples = new MockFirmware({ profile: NAPLES, memory: new CiphertextMemory(), root: root() });
  t.is(naples.init({ es: false }).status, 0);
  expectStatus(t, naples.launchStart({ handle: 0, policy: SEV_POLICY.ES, dhCert: null, session: null }), SEV_RET.UNSUPPORTED);
  const nh = naples.launchStart({ handle: 0, policy: 0, dhCert: null, session: null }).handle;
  t.is(naples.dfFlush().status, 0);
  expectStatus(t, naples.activate(nh, 16), SEV_RET.INVALID_ASID, 'Naples has 15 ASIDs');
  t.is(naples.activate(nh, 1).status, 0, 'without SEV-ES every ASID is a SEV ASID');
});

test('LAUNCH_UPDATE_VMSA: 4096 bytes (checked first), ES guests only', (t) => {
  const fw = firmware();
  expectStatus(t, fw.launchUpdateVmsa(1, page(0x1000n, 4080)), SEV_RET.INVALID_LEN, 'length before platform state');
  const milan = ready({ profile: MILAN, es: true });
  const plain = launch(milan, 0);
  expectStatus(t, milan.launchUpdateVmsa(plain.handle, page(0x1000n, 4096)), SEV_RET.UNSUPPORTED);
  const es = launch(milan, SEV_POLICY.ES, { asid: 42 });
  t.is(milan.launchUpdateVmsa(es.handle, page(0x1000n, 4096)).status, 0);
  expectStatus(t, milan.launchUpdateVmsa(es.handle, page(0x1000n, 8192)), SEV_RET.INVALID_LEN);
});

test('NOSEND refuses SEND_START; attestation is INVALID_COMMAND before API 0.23', (t) => {
  const { fw, g } = guestIn('RUNNING', SEV_POLICY.NOSEND);
  expectStatus(t, GUEST_COMMANDS.SEND_START!.run(fw, g.handle), SEV_RET.POLICY_FAILURE);
  t.is(fw.guestStatus(g.handle).state, GSTATE.RUNNING);

  const naples = new MockFirmware({ profile: NAPLES, memory: new CiphertextMemory(), root: root() });
  t.is(naples.init({ es: false }).status, 0);
  t.is(naples.dfFlush().status, 0);
  const ng = launch(naples, 0, { asid: 3 });
  advance(naples, ng, GSTATE.RUNNING);
  expectStatus(t, naples.attestation(ng.handle, new Uint8Array(16), 0xd0), SEV_RET.INVALID_COMMAND);
});

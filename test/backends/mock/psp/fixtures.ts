/** Test helper (not a test): mock firmware set-ups shared by test/mock-psp-*.test.ts. */
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { createSession } from '../../../../lib/owner/index.js';
import type { LaunchSession } from '../../../../lib/owner/index.js';
import { CiphertextMemory, MockFirmware, ROME, mockAmdRoot } from '../../../../lib/backends/mock/psp/index.js';
import type { MemoryController, MockFirmwareOptions, PhysRange } from '../../../../lib/backends/mock/psp/index.js';
import {
  SevAlgo,
  SevUsage,
  createSevCert,
  ecdhP384,
  generateP384,
  parseSevCert,
  serializeSession,
  serializeSevCert,
  sevCertPublicKey,
  wrapSession,
} from '../../../../lib/crypto/index.js';
import { GSTATE } from '../../../../lib/uapi/constants.js';
import { SEV_RET, sevStatusName } from '../../../../lib/uapi/sev-status.js';

export { GSTATE, SEV_RET };

/** RSA-2048 keeps key generation short; the generation-faithful RSA-4096 root has its own test. */
export const root = (): ReturnType<typeof mockAmdRoot> => mockAmdRoot(2048);

/** A random source whose next answers can be scripted (each queued buffer answers one call of its length). */
export function scriptedRandom(): { random: (n: number) => Uint8Array; queue: (...b: Uint8Array[]) => void; pending: () => number } {
  const q: Uint8Array[] = [];
  return {
    random: (n) => {
      if (q.length > 0 && q[0]!.length === n) return q.shift()!;
      return randomBytes(n);
    },
    queue: (...b) => q.push(...b),
    pending: () => q.length,
  };
}

export function firmware(opts: Partial<MockFirmwareOptions> = {}): MockFirmware {
  return new MockFirmware({ profile: ROME, memory: new CiphertextMemory(), root: root(), ...opts });
}

/** INIT (optionally with ES) and DF_FLUSH, so ACTIVATE works. */
export function ready(opts: Partial<MockFirmwareOptions> & { es?: boolean } = {}): MockFirmware {
  const { es, ...rest } = opts;
  const fw = firmware(rest);
  if (fw.init({ es: es ?? false }).status !== 0) throw new Error('INIT failed');
  if (fw.dfFlush().status !== 0) throw new Error('DF_FLUSH failed');
  return fw;
}

/** Status as a name, for readable assertion messages. */
export function st(r: { status: number }): string {
  return sevStatusName(r.status);
}

export function expectStatus(t: ExecutionContext, r: { status: number }, expected: number, what = ''): void {
  t.is(st(r), sevStatusName(expected), what);
}

export function owner(fw: MockFirmware, policy: number, extra: Partial<Parameters<typeof createSession>[0]> = {}): LaunchSession {
  const pdh = fw.pdhCertExport(0x824, 0x186c).pdh!;
  return createSession({ pdh, policy, ...extra });
}

let nextAsid = 100;
/** A fresh, distinct non-ES ASID for ROME-like profiles (100..509). */
export function asid(): number {
  nextAsid = nextAsid >= 509 ? 100 : nextAsid + 1;
  return nextAsid;
}

export interface Guest {
  handle: number;
  session: LaunchSession | null;
  asid: number;
}

/** LAUNCH_START (with an owner session unless `session: false`) and ACTIVATE: GSTATE LUPDATE, active. */
export function launch(fw: MockFirmware, policy = 0, opts: { session?: boolean; activate?: boolean; asid?: number } = {}): Guest {
  const session = opts.session === false ? null : owner(fw, policy);
  const r = fw.launchStart({ handle: 0, policy, dhCert: session?.godhCert ?? null, session: session?.session ?? null });
  if (r.status !== 0) throw new Error(`LAUNCH_START failed: ${st(r)}`);
  const a = opts.asid ?? asid();
  if (opts.activate !== false) {
    const act = fw.activate(r.handle, a);
    if (act.status !== 0) throw new Error(`ACTIVATE failed: ${st(act)}`);
  }
  return { handle: r.handle, session, asid: a };
}

export function range(paddr: bigint, bytes: Uint8Array): PhysRange {
  return { paddr, bytes };
}

/** Drive a launched guest from its current state on to `state` (LSECRET, RUNNING, SUPDATE, SENT). */
export function advance(fw: MockFirmware, g: Guest, state: number): void {
  const must = (r: { status: number }, what: string): void => {
    if (r.status !== 0) throw new Error(`${what} failed: ${st(r)}`);
  };
  const now = fw.guestStatus(g.handle).state;
  if (now === GSTATE.LUPDATE && state >= GSTATE.LSECRET) must(fw.launchMeasure(g.handle, 48), 'LAUNCH_MEASURE');
  if (now <= GSTATE.LSECRET && state >= GSTATE.RUNNING) must(fw.launchFinish(g.handle), 'LAUNCH_FINISH');
  if (now <= GSTATE.RUNNING && (state === GSTATE.SUPDATE || state === GSTATE.SENT)) {
    const pdh = fw.pdhCertExport(0x824, 0x186c).pdh!;
    must(
      fw.sendStart(g.handle, { pdhCert: pdh, platCerts: new Uint8Array(0), amdCerts: new Uint8Array(0), sessionCapacity: 128 }),
      'SEND_START',
    );
  }
  if (state === GSTATE.SENT) must(fw.sendFinish(g.handle), 'SEND_FINISH');
}

/** A guest created by RECEIVE_START (GSTATE RUPDATE), activated. */
export function received(fw: MockFirmware, policy = 0): Guest {
  const s = owner(fw, policy);
  const r = fw.receiveStart({ handle: 0, policy, pdhCert: s.godhCert, session: s.session });
  if (r.status !== 0) throw new Error(`RECEIVE_START failed: ${st(r)}`);
  const a = asid();
  const act = fw.activate(r.handle, a);
  if (act.status !== 0) throw new Error(`ACTIVATE failed: ${st(act)}`);
  return { handle: r.handle, session: s, asid: a };
}

export type { MemoryController };

/**
 * A session for any policy (lib/owner refuses reserved bits): GODH key, Z = ECDH(GODH, PDH), the
 * docs/sev-reference.md §3.2 blob. Returns what LAUNCH_START takes plus TEK/TIK.
 */
export function rawSession(fw: MockFirmware, policy: number): { godhCert: Buffer; session: Buffer; tek: Buffer; tik: Buffer } {
  const pdh = parseSevCert(fw.pdhCertExport(0x824, 0x186c).pdh!);
  const godh = generateP384().privateKey;
  const tek = randomBytes(16);
  const tik = randomBytes(16);
  const s = wrapSession({ sharedSecret: ecdhP384(godh, sevCertPublicKey(pdh)), tek, tik, policy });
  const godhCert = serializeSevCert(createSevCert({ usage: SevUsage.PDH, algo: SevAlgo.ECDH_SHA256, publicKey: godh }));
  return { godhCert, session: serializeSession(s), tek, tik };
}

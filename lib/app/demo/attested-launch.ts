/**
 * `kvm-sev demo`: the whole attested launch, on whichever backend is open, one timed step at a time.
 *
 * 1. platform  the guest owner verifies the platform's certificate chain (PDH_CERT_EXPORT) and
 * 2. session   builds a launch session for the platform's PDH;
 * 3. launch    the host launches the guest (INIT/INIT2, LAUNCH_START, LAUNCH_UPDATE_DATA, LAUNCH_MEASURE);
 * 4. measure   the owner verifies the measurement against the image it expects,
 * 5. secret    and injects a secret (LAUNCH_SECRET), and the host finishes the launch;
 * 6. run       the guest runs (where KVM runs guests) and prints, on its serial port, a digest of the
 *              secret it read from its own memory, which the owner checks;
 * 7. host-view the host's view of the guest's private memory is ciphertext.
 *
 * @module kvm-sev/demo
 */
import { randomBytes } from 'node:crypto';
import type { Backend } from '../../backend/contract.js';
import { KvmSevError } from '../../backend/errors.js';
import { secretDemoProgram, secretDigest } from '../guest/programs.js';
import { SerialPort } from '../guest/serial.js';
import { setupRealMode } from '../guest/setup.js';
import { HybridBackend } from '../../backends/hybrid/hybrid-backend.js';
import { Kvm } from '../../kvm/kvm.js';
import type { VcpuExit } from '../../kvm/exits.js';
import { mockAmdRoot } from '../mock-behind.js';
import { buildSecret, createSession, expectedLaunchDigest, parsePlatformCerts, verifyChain, verifyMeasurement } from '../../owner/index.js';
import { parseSevCert } from '../../crypto/sev-cert.js';
import { SevLaunch } from '../../sev/launch.js';
import { SevPlatform } from '../../sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM, SEV_POLICY } from '../../uapi/constants.js';

export type DemoStepName = 'platform' | 'session' | 'launch' | 'measure' | 'secret' | 'run' | 'host-view';

export interface DemoStep {
  step: DemoStepName;
  ok: boolean;
  /** Skipped where the backend cannot do it (the pure mock runs no guest code). */
  skipped?: boolean;
  ms: number;
  summary: string;
  detail: Record<string, unknown>;
  error?: { message: string; code?: string; hint?: string };
}

export interface DemoReport {
  backend: string;
  ok: boolean;
  steps: DemoStep[];
}

export interface DemoOptions {
  backend: Backend;
  /** Called as each step ends (for live output). */
  onStep?: (s: DemoStep) => void;
  /** Guest policy (default: NOKS, debugging allowed so the host can show DBG_DECRYPT). */
  policy?: number;
  /** Guest memory in bytes (default 64 KiB; a multiple of 64 KiB), all of it measured. */
  guestSize?: number;
  /** Progress of the measured launch (LAUNCH_UPDATE_DATA), for large guests. */
  onProgress?: (done: number, total: number) => void;
}

const MIN_SIZE = 0x10000;
const SECRET_GPA = 0x9000;
const SECRET_LEN = 32;
const CODE_GPA = 0x1000;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** The roots the owner trusts: AMD's on a real host; the mock's own root for a mocked firmware. */
export function extraRoots(backend: Backend): { ark: Uint8Array; ask: Uint8Array }[] {
  const root = mockAmdRoot(backend);
  return root ? [root] : [];
}

export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const report: DemoReport = { backend: o.backend.name, ok: true, steps: [] };
  const policy = o.policy ?? SEV_POLICY.NOKS;
  const MEM_SIZE = o.guestSize ?? MIN_SIZE;
  if (!Number.isSafeInteger(MEM_SIZE) || MEM_SIZE < MIN_SIZE || MEM_SIZE % MIN_SIZE !== 0) {
    throw new KvmSevError(
      'ERR_KVM_SEV_DEMO_SIZE',
      `the demo guest's memory must be a multiple of 64 KiB, at least 64 KiB (got ${MEM_SIZE})`,
    );
  }
  const cleanup: (() => void)[] = [];

  const step = async (name: DemoStepName, f: () => Promise<Omit<DemoStep, 'step' | 'ok' | 'ms'> & { ok?: boolean }>): Promise<boolean> => {
    if (!report.ok) return false;
    const t0 = performance.now();
    let s: DemoStep;
    try {
      const r = await f();
      s = {
        step: name,
        ok: r.ok ?? true,
        ms: +(performance.now() - t0).toFixed(2),
        summary: r.summary,
        detail: r.detail,
        ...(r.skipped ? { skipped: true } : {}),
      };
    } catch (e) {
      const err = e as Error & { code?: string; hint?: string };
      s = {
        step: name,
        ok: false,
        ms: +(performance.now() - t0).toFixed(2),
        summary: err.message,
        detail: {},
        error: { message: err.message, ...(err.code ? { code: err.code } : {}), ...(err.hint ? { hint: err.hint } : {}) },
      };
    }
    report.steps.push(s);
    if (!s.ok) report.ok = false;
    o.onStep?.(s);
    return s.ok;
  };

  const kvm = Kvm.open({ backend: o.backend });
  cleanup.push(() => kvm.close());
  try {
    let platform!: SevPlatform;
    let pdh!: Uint8Array;
    let api = { apiMajor: 0, apiMinor: 0, build: 0 };
    await step('platform', async () => {
      platform = SevPlatform.open(o.backend);
      cleanup.push(() => platform.close());
      const st = await platform.platformStatus();
      api = { apiMajor: st.apiMajor, apiMinor: st.apiMinor, build: st.build };
      const exp = await platform.pdhCertExport();
      pdh = exp.pdh;
      const chain = parsePlatformCerts(exp.certChain);
      const roots = extraRoots(o.backend);
      const v = verifyChain({ pdh: parseSevCert(pdh), ...chain, extraRoots: roots });
      const gen = (v as { generation?: string }).generation;
      return {
        summary: `firmware ${st.apiMajor}.${st.apiMinor} build ${st.build}; chain ARK → ASK → CEK → PEK → PDH verified${gen ? ` (${gen} root)` : roots.length ? " (the mock platform's root)" : ''}`,
        detail: { ...api, state: st.stateName, root: gen ?? (roots.length ? 'mock' : 'amd') },
      };
    });

    let session!: ReturnType<typeof createSession>;
    await step('session', async () => {
      session = createSession({ pdh, policy });
      return {
        summary: `ECDH with the PDH; TEK/TIK wrapped, policy 0x${policy.toString(16)} MAC'd`,
        detail: { policy, session: hex(session.session) },
      };
    });

    const secret = randomBytes(SECRET_LEN);
    let image!: Uint8Array;
    let measured!: Awaited<ReturnType<Awaited<ReturnType<Awaited<ReturnType<typeof SevLaunch.init>>['launchStart']>>['launchMeasure']>>;
    let vm!: ReturnType<Kvm['createVm']>;
    let mem!: ReturnType<ReturnType<Kvm['createVm']>['addMemory']>;
    await step('launch', async () => {
      const init2 = kvm.supportedVmTypes().includes(KVM_X86_SEV_VM);
      vm = kvm.createVm(init2 ? KVM_X86_SEV_VM : KVM_X86_DEFAULT_VM);
      cleanup.unshift(() => vm.close());
      mem = vm.addMemory({ guestPhysAddr: 0n, size: MEM_SIZE });
      mem.write(BigInt(CODE_GPA), secretDemoProgram(SECRET_GPA, SECRET_LEN, CODE_GPA).code);
      image = mem.read(0n, MEM_SIZE); // what the owner expects to be measured
      const guest = await SevLaunch.init(vm, { platform });
      const launching = await guest.launchStart({ policy, dh: session.godhCert, session: session.session });
      await launching.launchUpdateData(mem, o.onProgress ? { onProgress: o.onProgress } : {});
      measured = await launching.launchMeasure();
      return {
        summary: `${init2 ? 'INIT2 on a KVM_X86_SEV_VM' : 'INIT on a default VM'}, LAUNCH_START, ${MEM_SIZE >= 1 << 20 ? `${MEM_SIZE / (1 << 20)} MiB` : `${MEM_SIZE / 1024} KiB`} measured and encrypted, LAUNCH_MEASURE`,
        detail: {
          init: init2 ? 'INIT2' : 'INIT',
          measurement: hex(measured.measurement.measure),
          mnonce: hex(measured.measurement.mnonce),
        },
      };
    });

    await step('measure', async () => {
      const digest = expectedLaunchDigest({ firmware: image });
      const ok = verifyMeasurement({ measurement: measured.measurement, tik: session.tik, ...api, policy, digest });
      if (!ok)
        throw new KvmSevError(
          'ERR_KVM_SEV_MEASUREMENT',
          'the launch measurement does not match the image, policy and firmware the owner expects: refusing to send the secret',
        );
      return { summary: 'HMAC(TIK, API ‖ build ‖ policy ‖ SHA-256(image) ‖ MNONCE) matches', detail: { digest: hex(digest) } };
    });

    let running!: Awaited<ReturnType<typeof measured.launchFinish>>;
    await step('secret', async () => {
      const packet = buildSecret({ tek: session.tek, tik: session.tik, measurement: measured.measurement, secret });
      await measured.launchSecret({ ...packet, guest: mem.range(BigInt(SECRET_GPA), SECRET_LEN) });
      running = await measured.launchFinish();
      const st = await running.status();
      return {
        summary: `${SECRET_LEN}-byte secret injected at 0x${SECRET_GPA.toString(16)}, LAUNCH_FINISH: ${st.stateName}`,
        detail: { state: st.stateName, handle: st.handle },
      };
    });

    await step('run', async () => {
      const expected = secretDigest(secret);
      if (o.backend.name === 'mock') {
        return {
          skipped: true,
          summary: 'skipped: the pure mock runs no guest code (the hybrid and native backends do)',
          detail: { expected },
        };
      }
      const vcpu = vm.createVcpu(0);
      setupRealMode(vcpu, CODE_GPA);
      const serial = new SerialPort();
      let exit: VcpuExit;
      let exits = 0;
      do {
        exit = await vcpu.run();
        exits++;
      } while (serial.handle(exit) && exits < 10_000);
      const printed = serial.output.trim();
      const ok = printed === `secret digest: ${expected}`;
      if (!ok)
        throw new KvmSevError(
          'ERR_KVM_SEV_DEMO_GUEST',
          `the guest printed '${printed}', expected 'secret digest: ${expected}' (exit ${exit.reason})`,
        );
      return {
        summary: `the guest printed "${printed}", the digest of the secret it read from its own memory`,
        detail: { printed, expected, exits },
      };
    });

    await step('host-view', async () => {
      const plain = secret;
      let seen: Uint8Array;
      if (o.backend instanceof HybridBackend) seen = o.backend.hostRead(vm.fd, BigInt(SECRET_GPA), SECRET_LEN);
      else seen = mem.read(BigInt(SECRET_GPA), SECRET_LEN); // mock and native: memory holds ciphertext
      const same = Buffer.from(seen).equals(Buffer.from(plain));
      if (same)
        throw new KvmSevError('ERR_KVM_SEV_DEMO_PLAINTEXT', 'the host can read the secret in plaintext: guest memory is not encrypted');
      const viaDbg = await running.dbgDecrypt(mem.range(BigInt(SECRET_GPA), SECRET_LEN));
      return {
        summary: `the host reads ${hex(seen.subarray(0, 8))}… where the guest has its secret; DBG_DECRYPT (policy allows debugging) ${Buffer.from(viaDbg).equals(Buffer.from(plain)) ? 'recovers it' : 'does not match'}`,
        detail: { hostView: hex(seen), dbgDecryptMatches: Buffer.from(viaDbg).equals(Buffer.from(plain)) },
      };
    });
  } finally {
    for (const c of cleanup) {
      try {
        c();
      } catch {
        /* best effort */
      }
    }
  }
  return report;
}

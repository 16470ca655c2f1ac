/**
 * The SEV guest lifecycle, one suite for every backend that has SEV (native on an SEV host, the
 * hybrid and the mock everywhere): the type-state launch with the guest owner's session, measurement
 * and secret, its state checks, the exact failures of a tampered session, a wrong policy or a wrong
 * digest, the memlock pre-check, progress, teardown, and SEV-ES protected state.
 */
import type { ExecutionContext } from 'ava';
import type { Backend } from '../../lib/backend/contract.js';
import { extraRoots } from '../../lib/app/demo/attested-launch.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { Vm } from '../../lib/kvm/vm.js';
import {
  buildSecret,
  createSession,
  expectedLaunchDigest,
  parsePlatformCerts,
  verifyAttestationReport,
  verifyChain,
  verifyMeasurement,
} from '../../lib/owner/index.js';
import { parseSevCert } from '../../lib/crypto/sev-cert.js';
import { SevLaunch, type LaunchingGuest, type MeasuredGuest, type RunningGuest } from '../../lib/sev/launch.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, SEV_POLICY } from '../../lib/uapi/constants.js';
import { SEV_RET } from '../../lib/uapi/sev-status.js';
import { hwTest, type Requirement } from '../helpers/hw.js';

export interface SevTarget {
  name: string;
  req: Requirement;
  make(opts?: { memlockBytes?: bigint }): Backend;
  /** The backend answers memlock from its options (mock, hybrid) rather than the real process limit. */
  mockedMemlock: boolean;
  /** ASIDs held by guests, where the backend can tell (mock snapshot). */
  asidsHeld?(b: Backend): number[];
}

/** /dev/kvm, /dev/sev and a VM with 64 KiB of guest memory; closed when the test ends, whatever happened. */
async function setup(t: ExecutionContext, b: Backend, type = KVM_X86_SEV_VM) {
  const kvm = Kvm.open({ backend: b });
  t.teardown(() => kvm.close());
  const platform = SevPlatform.open(b);
  t.teardown(() => platform.close());
  const st = await platform.platformStatus();
  const api = { apiMajor: st.apiMajor, apiMinor: st.apiMinor, build: st.build };
  const { pdh, certChain } = await platform.pdhCertExport();
  const vm = kvm.createVm(type);
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000 });
  mem.write(0x1000n, new TextEncoder().encode('the guest image, measured'));
  const close = () => {
    vm.close();
    platform.close();
    kvm.close();
  };
  return { kvm, platform, api, pdh, certChain, vm, mem, close };
}

// Compile-time checks of the type-state: each line must fail to type-check (or the build fails).
export function typeStateChecks(launching: LaunchingGuest<false>, measured: MeasuredGuest, running: RunningGuest): void {
  // @ts-expect-error launchSecret is not a step of a launching guest (measure first)
  void launching.launchSecret;
  // @ts-expect-error launchUpdateData is not a step of a measured guest
  void measured.launchUpdateData;
  // @ts-expect-error launchFinish is not a step of a running guest
  void running.launchFinish;
  // @ts-expect-error launchUpdateVmsa needs an SEV-ES launch (LaunchingGuest<true>)
  void launching.launchUpdateVmsa();
}

export function lifecycleSuite(target: SevTarget): void {
  const title = (s: string) => `${target.name}: ${s}`;

  hwTest(target.req, title('an attested launch: chain, session, measurement, secret, attestation report'), async (t) => {
    const b = target.make();
    const s = await setup(t, b);
    const chain = parsePlatformCerts(s.certChain);
    t.notThrows(() => verifyChain({ pdh: parseSevCert(s.pdh), ...chain, extraRoots: extraRoots(b) }));
    const policy = SEV_POLICY.NOKS;
    const session = createSession({ pdh: s.pdh, policy });
    const guest = await SevLaunch.init(s.vm, { platform: s.platform });
    const image = s.mem.read(0n, 0x10000);
    const progress: number[] = [];
    const launching = await guest.launchStart({ policy, dh: session.godhCert, session: session.session });
    await launching.launchUpdateData(s.mem, { chunkSize: 0x4000, onProgress: (done) => progress.push(done) });
    t.deepEqual(progress, [0x4000, 0x8000, 0xc000, 0x10000], 'progress after each chunk');
    const measured = await launching.launchMeasure();
    t.true(
      verifyMeasurement({
        measurement: measured.measurement,
        tik: session.tik,
        ...s.api,
        policy,
        digest: expectedLaunchDigest({ firmware: image }),
      }),
    );
    const secret = new TextEncoder().encode('sixteen byte key'.repeat(2));
    const pkt = buildSecret({ tek: session.tek, tik: session.tik, measurement: measured.measurement, secret });
    await measured.launchSecret({ ...pkt, guest: s.mem.range(0x9000n, 32) });
    const running = await measured.launchFinish();
    t.like(await running.status(), { state: 3, stateName: 'RUNNING', policy });
    t.deepEqual(await running.dbgDecrypt(s.mem.range(0x9000n, 32)), secret, 'the secret is in the guest');
    const report = await running.getAttestationReport(new Uint8Array(16).fill(7));
    t.true(verifyAttestationReport(report, chain.pek), 'the report is signed by the PEK');
    running.close();
    s.close();
  });

  hwTest(target.req, title('state checks: a stale state object and an out-of-order firmware state are explained in words'), async (t) => {
    const b = target.make();
    const s = await setup(t, b);
    const guest = await SevLaunch.init(s.vm, { platform: s.platform });
    const launching = await guest.launchStart({ policy: 0 });
    const measured = await launching.launchMeasure();
    const stale = await t.throwsAsync(launching.launchUpdateData(s.mem));
    t.is((stale as { code?: string }).code, 'ERR_KVM_SEV_STALE_STATE');
    t.regex(stale.message, /moved on to measured/);
    // Behind the launcher's back, the raw command finishes the launch: the next step sees the firmware's state.
    await measured.commands.launchFinish();
    const wrong = await t.throwsAsync(measured.launchFinish());
    t.is((wrong as { code?: string }).code, 'ERR_KVM_SEV_WRONG_STATE');
    t.regex(wrong.message, /needs the guest in LSECRET .* but the firmware says it is RUNNING .*the launch is finished/);
    measured.close();
    s.close();
  });

  hwTest(target.req, title('a tampered session, a wrong policy and a wrong digest each fail exactly'), async (t) => {
    const b = target.make();
    const check = async (session: Uint8Array, dh: Uint8Array, policy: number, t: ExecutionContext) => {
      const s = await setup(t, b);
      try {
        const guest = await SevLaunch.init(s.vm, { platform: s.platform });
        const e = await t.throwsAsync(guest.launchStart({ policy, dh, session }));
        t.like(e, { code: 'EIO', sev: { command: 'LAUNCH_START', fwError: SEV_RET.BAD_MEASUREMENT, fwErrorName: 'BAD_MEASUREMENT' } });
      } finally {
        s.close();
      }
    };
    const s0 = await setup(t, b);
    const pdh = s0.pdh;
    const api = s0.api;
    s0.close();
    const ok = createSession({ pdh, policy: 0 });
    const tampered = Uint8Array.from(ok.session);
    tampered[0x10]! ^= 1; // WRAP_TK: the wrap MAC no longer matches
    await check(tampered, ok.godhCert, 0, t);
    await check(ok.session, ok.godhCert, SEV_POLICY.NODBG, t); // POLICY_MAC was made for policy 0

    const s = await setup(t, b);
    const image = s.mem.read(0n, 0x10000);
    const guest = await SevLaunch.init(s.vm, { platform: s.platform });
    const l = await guest.launchStart({ policy: 0, dh: ok.godhCert, session: ok.session });
    await l.launchUpdateData(s.mem);
    const m = await l.launchMeasure();
    const wrongImage = Uint8Array.from(image);
    wrongImage[0x1000]! ^= 0xff;
    t.false(
      verifyMeasurement({
        measurement: m.measurement,
        tik: ok.tik,
        ...api,
        policy: 0,
        digest: expectedLaunchDigest({ firmware: wrongImage }),
      }),
    );
    t.true(
      verifyMeasurement({
        measurement: m.measurement,
        tik: ok.tik,
        ...api,
        policy: 0,
        digest: expectedLaunchDigest({ firmware: image }),
      }),
    );
    m.close();
    s.close();
  });

  hwTest(target.req, title('close() tears down in order and frees the ASID'), async (t) => {
    const b = target.make();
    const s = await setup(t, b);
    const guest = await SevLaunch.init(s.vm, { platform: s.platform });
    const running = await (await (await guest.launchStart({ policy: 0 })).launchMeasure()).launchFinish();
    if (target.asidsHeld) t.is(target.asidsHeld(b).length, 1);
    running.close();
    running.close();
    t.true(s.vm.closed);
    if (target.asidsHeld) t.deepEqual(target.asidsHeld(b), []);
    await t.throwsAsync(running.status(), { code: 'EBADF' } as never);
    s.close();
  });

  hwTest(target.req, title('SEV-ES: LAUNCH_UPDATE_VMSA, after which KVM hides the registers'), async (t) => {
    const b = target.make();
    const s = await setup(t, b, KVM_X86_SEV_ES_VM);
    const guest = await SevLaunch.init(s.vm, { platform: s.platform, es: true });
    const vcpu = s.vm.createVcpu(0);
    t.is(typeof vcpu.getRegs().rip, 'bigint');
    const launching = await guest.launchStart({ policy: SEV_POLICY.ES });
    await launching.launchUpdateData(s.mem);
    await launching.launchUpdateVmsa();
    t.throws(() => vcpu.getRegs(), { code: 'EINVAL' } as never);
    const running = await (await launching.launchMeasure()).launchFinish();
    t.is((await running.status()).stateName, 'RUNNING');
    running.close();
    s.close();
  });

  if (target.mockedMemlock) {
    hwTest(target.req, title('registerRegion checks RLIMIT_MEMLOCK first and names the limit, the need and the fix'), async (t) => {
      const b = target.make({ memlockBytes: 0x8000n });
      const s = await setup(t, b);
      const guest = await SevLaunch.init(s.vm, { platform: s.platform });
      guest.registerRegion(s.mem.range(0n, 0x8000));
      const e = t.throws(() => guest.registerRegion(s.mem.range(0x8000n, 0x8000)));
      t.is((e as { code?: string }).code, 'ERR_KVM_SEV_MEMLOCK');
      t.regex(e.message, /RLIMIT_MEMLOCK \(32768 bytes\).*ulimit -l.*CAP_IPC_LOCK/);
      guest.close();
      s.close();
    });
  }
}

export type { Vm };

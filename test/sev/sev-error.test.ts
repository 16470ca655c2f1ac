/**
 * Host facts in SEV hints come from the backend's system view: the real host on the native backend,
 * the mock's options on the mock (never the process running the mock).
 */
import test from 'ava';
import { KvmError } from '../../lib/backend/errors.js';
import type { SystemView } from '../../lib/backend/system-view.js';
import { MockHost } from '../../lib/backends/mock/index.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { hostSevFacts, memlockFacts, sevHint } from '../../lib/sev/sev-error.js';

/** A system view answering from `facts`; an absent memlock answer (or an Error) throws. */
function view(facts: { params?: Record<string, string>; memlock?: bigint | 'unlimited' | Error }): SystemView {
  return {
    kvmAmdParam: (name) => facts.params?.[name],
    kvmModules: () => (facts.params ? ['kvm', 'kvm_amd'] : ['kvm']),
    memlockLimit: () => {
      if (facts.memlock instanceof Error) throw facts.memlock;
      if (facts.memlock === undefined) throw new Error('no memlock fact');
      return facts.memlock;
    },
    capIpcLock: () => false,
    device: (path) => ({ path, exists: false, readable: false, writable: false }),
    cpuFlags: () => new Set(),
    cpuInfo: () => undefined,
    kernelRelease: () => '6.12.0-test',
  };
}

test('hostSevFacts: kvm_amd sev / sev_es as the system view reports them', (t) => {
  t.is(hostSevFacts(view({ params: { sev: 'N', sev_es: 'N' } })), 'kvm_amd sev=N, sev_es=N');
  t.is(hostSevFacts(view({ params: { sev: 'Y' } })), 'kvm_amd sev=Y', 'an older kernel has no sev_es');
  t.is(hostSevFacts(view({})), 'kvm_amd is not loaded');
  const broken: SystemView = {
    ...view({}),
    kvmAmdParam: () => {
      throw new Error('/sys is not mounted');
    },
  };
  t.is(hostSevFacts(broken), undefined, 'a view that cannot answer leaves the fact out');
});

test('memlockFacts: RLIMIT_MEMLOCK as the system view reports it', (t) => {
  t.is(memlockFacts(view({ memlock: 64n << 10n })), 'RLIMIT_MEMLOCK is 64 KiB');
  t.is(memlockFacts(view({ memlock: 8n << 20n })), 'RLIMIT_MEMLOCK is 8 MiB');
  t.is(memlockFacts(view({ memlock: 'unlimited' })), 'RLIMIT_MEMLOCK is unlimited');
  t.is(memlockFacts(view({ memlock: new Error('/proc is not mounted') })), undefined);
});

test('the hints quote the facts they are given', (t) => {
  const hostSev = 'kvm_amd sev=N, sev_es=N';
  t.regex(
    sevHint('ENOTTY', { via: 'kvm', command: 'LAUNCH_START', sevEnabled: false, hostSev }) ?? '',
    /^SEV is not enabled on this host: KVM has no memory-encryption support here \(kvm_amd sev=N, sev_es=N\)\./,
  );
  t.regex(
    sevHint('EINVAL', { via: 'kvm', command: 'VM_MOVE_ENC_CONTEXT_FROM', sevEnabled: false, hostSev }) ?? '',
    /^kvm_amd sev=N, sev_es=N: SEV is not enabled on this host, so KVM cannot move/,
  );
  t.regex(
    sevHint('ENOMEM', { via: 'kvm', command: 'REG_REGION', memlock: 'RLIMIT_MEMLOCK is 64 KiB' }) ?? '',
    /ran over RLIMIT_MEMLOCK \(RLIMIT_MEMLOCK is 64 KiB\): raise it/,
  );
});

test('on the mock, REG_REGION over its RLIMIT_MEMLOCK answers ENOMEM with the mock limit in the hint', async (t) => {
  const kvm = Kvm.open({ backend: new MockHost({ memlock: { limit: 1n << 20n, capIpcLock: false } }) });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const sev = SevPlatform.open(kvm.backend);
  t.teardown(() => sev.close());
  const cmds = new SevGuestCommands(vm, sev);
  await cmds.init();
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x200000 });
  const e = t.throws(() => cmds.registerRegion(mem.range(0n, 0x200000)), { instanceOf: KvmError });
  t.is(e?.code, 'ENOMEM');
  t.regex(e?.hint ?? '', /ran over RLIMIT_MEMLOCK \(RLIMIT_MEMLOCK is 1 MiB\)/);
});

test('on a mock without SEV, the hint quotes the mock kvm_amd parameters (sev=N), not the host running it', async (t) => {
  const kvm = Kvm.open({ backend: new MockHost({ sev: { enabled: false } }) });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const cmds = new SevGuestCommands(vm);
  const e = await t.throwsAsync(cmds.guestStatus(), { instanceOf: KvmError });
  t.is(e?.code, 'ENOTTY');
  t.regex(e?.hint ?? '', /^SEV is not enabled on this host: KVM has no memory-encryption support here \(kvm_amd sev=N, sev_es=N\)\./);
});

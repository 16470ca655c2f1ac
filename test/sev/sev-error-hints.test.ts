/**
 * An SEV error's message carries its `[KVM_SEV_…, firmware status …]` suffix once, in the message
 * and in the stack, however late the stack is first read; after a MOVE, the EBADF of a firmware
 * command on the new VM says that KVM left the /dev/sev fd behind.
 */
import test from 'ava';
import { inspect } from 'node:util';
import { MockHost } from '../../lib/backends/mock/index.js';
import { errnoError, type KvmError } from '../../lib/backend/errors.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import { SevGuestCommands } from '../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../lib/sev/launch.js';
import { SevPlatform } from '../../lib/sev/platform.js';
import { enrichSevError } from '../../lib/sev/sev-error.js';
import { KVM_X86_SEV_VM } from '../../lib/uapi/constants.js';

const count = (s: string, sub: string) => s.split(sub).length - 1;

test('the suffix appears once in message, stack and inspect(), whether or not the stack was read before', (t) => {
  for (const readFirst of [false, true]) {
    const e = errnoError(5, 'ioctl', 'KVM_MEMORY_ENCRYPT_OP');
    if (readFirst) void e.stack;
    enrichSevError(e, { via: 'kvm', command: 'GUEST_STATUS', errorWord: 2 });
    const suffix = '[KVM_SEV_GUEST_STATUS, firmware status INVALID_GUEST_STATE';
    t.is(count(e.message, suffix), 1, `message (stack read first: ${readFirst})`);
    t.is(count(e.stack ?? '', suffix), 1, `stack (stack read first: ${readFirst})`);
    t.is(count(inspect(e), suffix), 1, `inspect (stack read first: ${readFirst})`);
  }
});

test('after a MOVE, GUEST_STATUS on the new VM is EBADF, and the hint says the new VM needs its own /dev/sev fd', async (t) => {
  const host = new MockHost();
  using kvm = Kvm.open({ backend: host });
  await using platform = SevPlatform.open(kvm.backend);
  using src = kvm.createVm(KVM_X86_SEV_VM);
  const mem = src.addMemory({ guestPhysAddr: 0n, size: 0x4000 });
  const launching = await (await SevLaunch.init(src, { platform })).launchStart({ policy: 0 });
  await launching.launchUpdateData(mem);
  await (await launching.launchMeasure()).launchFinish();
  using dst = kvm.createVm(KVM_X86_SEV_VM);
  new SevGuestCommands(dst, platform).moveEncContextFrom(src);
  // Another SevGuestCommands on the same VM knows it too.
  const e = await t.throwsAsync<KvmError>(new SevGuestCommands(dst, platform).guestStatus(), { code: 'EBADF' });
  t.regex(e.hint ?? '', /after a MOVE the new VM needs its own \/dev\/sev fd/);
  t.notRegex(e.hint ?? '', /not launched yet/);
  t.is(count(inspect(e), '[KVM_SEV_GUEST_STATUS'), 1);
  // A VM that was never launched keeps the old explanation.
  using fresh = kvm.createVm(KVM_X86_SEV_VM);
  const cmds = new SevGuestCommands(fresh, platform);
  await cmds.init2();
  const e2 = await t.throwsAsync<KvmError>(cmds.guestStatus(), { code: 'EBADF' });
  t.regex(e2.hint ?? '', /not launched yet/);
});

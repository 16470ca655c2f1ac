/**
 * Errors that come back through the shared mock SEV service (a daemon on a Unix socket) read as
 * the local ones: the firmware-status suffix once, however the error is printed; and after a MOVE
 * between two clients' VMs, GUEST_STATUS on the new VM is EBADF with the hint that the new VM needs
 * its own /dev/sev fd.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import type { KvmError } from '../../../lib/backend/errors.js';
import { HybridBackend } from '../../../lib/backends/hybrid/hybrid-backend.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { SevGuestCommands } from '../../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../../lib/sev/launch.js';
import { SevPlatform } from '../../../lib/sev/platform.js';
import { KVM_X86_SEV_VM } from '../../../lib/uapi/constants.js';
import { kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();
const hw = req.ok ? test.serial : (title: string) => test.todo(`${title} — pending: ${req.reason}`);
const count = (s: string, sub: string) => s.split(sub).length - 1;

hw(
  'an error through the shared service prints its firmware-status suffix once; after MOVE the EBADF hint names the missing /dev/sev fd',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-daemon-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const socket = join(dir, 'sev.sock');
    const backend = new HybridBackend({ kernel: '7.2', sevService: { socket } });
    const kvm = Kvm.open({ backend });
    const platform = SevPlatform.open(backend);
    t.teardown(() => {
      platform.close();
      kvm.close();
      backend.sevService!.close();
    });
    const vm = kvm.createVm(KVM_X86_SEV_VM);
    t.teardown(() => vm.close());
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'remote-errors' });
    const launching = await (await SevLaunch.init(vm, { platform })).launchStart({ policy: 0 });
    const early = await t.throwsAsync<KvmError>(new SevGuestCommands(vm, platform).launchFinish(), { code: 'EIO' });
    const suffix = '[KVM_SEV_LAUNCH_FINISH, firmware status INVALID_GUEST_STATE (0x2)';
    t.is(count(early.message, suffix), 1, 'message');
    t.is(count(early.stack ?? '', suffix), 1, 'stack');
    t.is(count(inspect(early), suffix), 1, 'inspect (what console.log prints)');
    await launching.launchUpdateData(mem);
    await (await launching.launchMeasure()).launchFinish();

    const moved = kvm.createVm(KVM_X86_SEV_VM);
    t.teardown(() => moved.close());
    new SevGuestCommands(moved).moveEncContextFromFd(vm.fd);
    const e = await t.throwsAsync<KvmError>(new SevGuestCommands(moved, platform).guestStatus(), { code: 'EBADF' });
    t.is(count(inspect(e), '[KVM_SEV_GUEST_STATUS, firmware status SUCCESS'), 1);
    t.regex(e.hint ?? '', /after a MOVE the new VM needs its own \/dev\/sev fd/);
    moved.close();
    vm.close();
  },
);

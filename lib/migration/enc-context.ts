/**
 * Moving an SEV guest's encryption context to another VM (the SEV half of a VMM handoff), by
 * whichever mechanism the kernel offers, and saying which:
 * - `token`: the 2021 proposal (seed 000), KVM_SEV_LOCAL_SEND returns a one-time token that
 *   KVM_SEV_LOCAL_RECEIVE redeems. Never merged: only on a kernel that has it (the mock's
 *   `local-migration-2021` profile, or a patched kernel you name with `localMigration`), and never
 *   where id 22 is KVM_SEV_INIT2 (any kernel that offers SEV VM types).
 * - `move`: upstream KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM (5.16+) on the destination, with the source VM's fd.
 *
 * ```ts
 * import { Kvm, SevGuestCommands, SevLaunch, SevPlatform, pickEncContextMethod, transferEncContext } from 'kvm-sev';
 * import { MockHost } from 'kvm-sev/mock';
 * import { KVM_X86_SEV_VM } from 'kvm-sev/uapi';
 * using kvm = Kvm.open({ backend: new MockHost() });
 * using platform = SevPlatform.open(kvm.backend);
 * using source = kvm.createVm(KVM_X86_SEV_VM);
 * const launching = await (await SevLaunch.init(source, { platform })).launchStart({ policy: 0 });
 * await (await launching.launchMeasure()).launchFinish();
 * using target = kvm.createVm(KVM_X86_SEV_VM);
 * const how = pickEncContextMethod(kvm); // { method: 'move', why: 'KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM (…)' }
 * const used = await transferEncContext(new SevGuestCommands(source, platform), new SevGuestCommands(target), how.method);
 * console.log(used, how.why); // the source is dead now: its ioctls answer EIO
 * ```
 *
 * Between processes, {@link sevHandoff} gives handOff/takeOver the same choice
 * (examples/local-migration/ is a complete pair of VMMs).
 */
import type { BackendFd } from '../backend/contract.js';
import { KvmSevError } from '../backend/errors.js';
import type { Kvm } from '../kvm/kvm.js';
import type { Vm } from '../kvm/vm.js';
import { SevGuestCommands } from '../sev/kvm-sev-commands.js';
import { KVM_CAP, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM } from '../uapi/constants.js';
import type { LocalMigrationSource } from '../uapi/local-migration-structs.js';
import type { EncContextMethod, SevHandoff } from './handoff.js';

export interface MethodChoice {
  method: EncContextMethod;
  why: string;
}

/** Token where the kernel has LOCAL_SEND/RECEIVE (and you said so), else move where it has the cap. */
export function pickEncContextMethod(kvm: Kvm, opts: { localMigration?: LocalMigrationSource } = {}): MethodChoice {
  const types = kvm.supportedVmTypes();
  const hasInit2 = types.includes(KVM_X86_SEV_VM) || types.includes(KVM_X86_SEV_ES_VM);
  const canMove = kvm.checkExtension(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM) > 0;
  if (opts.localMigration) {
    if (hasInit2) {
      if (!canMove)
        throw new KvmSevError(
          'ERR_KVM_SEV_NO_TRANSFER',
          'this kernel offers SEV VM types, so id 22 is KVM_SEV_INIT2, not LOCAL_SEND; and it lacks KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM',
        );
      return {
        method: 'move',
        why: 'local migration ids were given, but this kernel offers SEV VM types, so id 22 is KVM_SEV_INIT2: moving with KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM instead',
      };
    }
    return { method: 'token', why: 'the kernel has the 2021 KVM_SEV_LOCAL_SEND/LOCAL_RECEIVE (as you said): a one-time token' };
  }
  if (canMove) return { method: 'move', why: 'KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM (upstream since 5.16)' };
  throw new KvmSevError(
    'ERR_KVM_SEV_NO_TRANSFER',
    'this kernel can move no SEV context: no KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM, and no local-migration commands were named',
  );
}

/** The SEV side of {@link handOff}/{@link takeOver}. `target` makes the new VM's commands (for LOCAL_RECEIVE it must be INIT'd first: `init`). */
export function sevHandoff(opts: {
  source?: SevGuestCommands;
  method: EncContextMethod;
  localMigration?: LocalMigrationSource;
  /** New VMM: initialise the new VM before LOCAL_RECEIVE (INIT, ES_INIT or INIT2, as the old one was). */
  init?: (cmds: SevGuestCommands) => Promise<void>;
}): SevHandoff {
  const lm = opts.localMigration ? { localMigration: opts.localMigration } : {};
  let prepared: SevGuestCommands | undefined;
  return {
    // A token receive needs an initialised target, and the kernel refuses INIT once vCPUs exist: so
    // the new VMM initialises its VM as soon as it is created.
    async prepare(vm: Vm) {
      if (opts.method !== 'token') return;
      prepared = new SevGuestCommands(vm, null, lm);
      await opts.init?.(prepared);
    },
    async send() {
      if (opts.method === 'move') return { method: 'move' };
      if (!opts.source) throw new KvmSevError('ERR_KVM_SEV_NO_SOURCE', 'sevHandoff: the old VMM must give its SevGuestCommands');
      return { method: 'token', token: await opts.source.localSend() };
    },
    async receive(vm: Vm, oldVmFd: BackendFd, info) {
      const ready = prepared?.vm === vm ? prepared : undefined;
      const cmds = ready ?? new SevGuestCommands(vm, null, lm);
      if (info.method === 'move') {
        cmds.moveEncContextFromFd(oldVmFd);
        return;
      }
      if (info.token === undefined) throw new KvmSevError('ERR_KVM_SEV_PROTOCOL', 'a token handoff without a token');
      if (!ready) await opts.init?.(cmds);
      await cmds.localReceive(info.token);
    },
  };
}

/** In one process: moves `source`'s context into `target` by `method`; returns what it used. */
export async function transferEncContext(
  source: SevGuestCommands,
  target: SevGuestCommands,
  method: EncContextMethod,
): Promise<EncContextMethod> {
  if (method === 'move') target.moveEncContextFrom(source.vm);
  else await target.localReceive(await source.localSend());
  return method;
}

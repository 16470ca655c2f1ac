/**
 * EMULATED hypercalls for hosts whose KVM cannot return a guest's VMMCALL/VMCALL to user space.
 *
 * On a paravirtualised nested KVM (kvm_pvm), a guest not built for PVM runs through KVM's instruction
 * emulator, and a VMMCALL there never comes back from KVM_RUN, so KVM_EXIT_HYPERCALL cannot be
 * shown on such a host. With `emulateHypercalls: { port }` the hybrid backend lets a guest ring a
 * doorbell instead: an OUT to `port` with the hypercall's registers (RAX = nr, RBX, RCX, RDX, RSI =
 * arguments). The hybrid turns that port-I/O exit into the KVM_EXIT_HYPERCALL the kernel would give
 * (arch/x86/kvm/x86.c: kvm_emulate_hypercall() for KVM_HC_MAP_GPA_RANGE, exiting only for the
 * hypercalls enabled with KVM_CAP_EXIT_HYPERCALL, and answering -KVM_ENOSYS / -KVM_EINVAL in RAX
 * itself otherwise), and before the next KVM_RUN puts `kvm_run.hypercall.ret` in RAX, as
 * complete_hypercall_exit() does. Everything above the backend (decoding, `reply(ret)`) is the code
 * that serves a real KVM_EXIT_HYPERCALL; only the trap is emulated. Each one is counted in
 * {@link HypercallDoorbell.emulated}.
 */
import type { BackendFd, VcpuRunHandle } from '../../../backend/contract.js';
import type { NativeBackend } from '../../native/native-backend.js';
import { KVM_EXIT, KVM_EXIT_IO_OUT, KVM_HC_MAP_GPA_RANGE } from '../../../uapi/constants.js';
import * as ioc from '../../../uapi/ioctls.js';
import { kvm_regs } from '../../../uapi/kvm-structs.js';

const KVM_ENOSYS = 1000n;
const KVM_EINVAL = 22n;
const OFF_EXIT_REASON = 8;
const OFF_UNION = 32;
const HYPERCALL_END = 104; // kvm_run.hypercall ends here (nr 32, args 40, ret 88, flags 96)

/** What a doorbell exit became. */
type Outcome = 'exit' | 'again';

export class HypercallDoorbell {
  /** The port the guest writes (an OUT of any size). */
  readonly port: number;
  /** Hypercalls emulated so far (each became a KVM_EXIT_HYPERCALL or a kernel-side answer). */
  emulated = 0;
  private readonly native: NativeBackend;

  constructor(native: NativeBackend, port: number) {
    this.native = native;
    this.port = port;
  }

  /**
   * Wraps a vCPU's runner: doorbell exits become hypercall exits; `exitMask()` is the VM's
   * KVM_CAP_EXIT_HYPERCALL mask at the time of the call.
   */
  wrap(r: VcpuRunHandle, vcpu: BackendFd, exitMask: () => bigint): VcpuRunHandle {
    let saved: Uint8Array | undefined; // the I/O exit's bytes, while JS sees a hypercall exit
    const page = () => new Uint8Array(r.runArea);
    const view = () => new DataView(r.runArea);
    const regs = (): ReturnType<typeof kvm_regs.decode> => {
      const a = kvm_regs.arg({});
      this.native.ioctl(vcpu, ioc.KVM_GET_REGS, a);
      return kvm_regs.decode(a.bytes);
    };
    // Completes the OUT without running guest code (KVM_RUN with immediate_exit), then sets RAX:
    // what complete_hypercall_exit() does on the next entry.
    const completeWithRax = (rax: bigint) => {
      view().setUint8(1, 1); // kvm_run.immediate_exit
      const x = r.runSync();
      if (x !== -4) throw new Error(`hypercall emulation: KVM_RUN with immediate_exit returned ${x}, expected -EINTR`);
      const cur = regs();
      this.native.ioctl(vcpu, ioc.KVM_SET_REGS, kvm_regs.arg({ ...cur, rax: BigInt.asUintN(64, rax) }));
    };
    // Completes a pending hypercall; true if it did. The completing KVM_RUN runs no guest code, so when
    // the caller itself asked for immediate_exit (e.g. completePendingIo() before a save) it is that run.
    const before = (): boolean => {
      if (!saved) return false;
      const ret = view().getBigUint64(88, true); // kvm_run.hypercall.ret, the VMM's answer
      page().set(saved.subarray(OFF_EXIT_REASON, OFF_EXIT_REASON + 4), OFF_EXIT_REASON);
      page().set(saved.subarray(OFF_UNION, HYPERCALL_END), OFF_UNION);
      saved = undefined;
      completeWithRax(ret);
      return true;
    };
    const immediateExit = () => view().getUint8(1) !== 0;
    const after = (res: number): Outcome => {
      if (res !== 0) return 'exit';
      const dv = view();
      if (dv.getUint32(OFF_EXIT_REASON, true) !== KVM_EXIT.IO) return 'exit';
      if (dv.getUint8(32) !== KVM_EXIT_IO_OUT || dv.getUint16(34, true) !== this.port) return 'exit';
      this.emulated++;
      const g = regs();
      const nr = g.rax;
      const [a0, a1, a2] = [g.rbx, g.rcx, g.rdx];
      // kvm_emulate_hypercall(): only KVM_HC_MAP_GPA_RANGE exits, when enabled; its arguments are checked first.
      if (nr !== BigInt(KVM_HC_MAP_GPA_RANGE) || !((exitMask() >> nr) & 1n)) {
        completeWithRax(-KVM_ENOSYS);
        return 'again';
      }
      if (a0 & 0xfffn || a1 === 0n || (a0 >> 12n) + a1 < a1) {
        completeWithRax(-KVM_EINVAL);
        return 'again';
      }
      saved = page().slice(0, HYPERCALL_END);
      dv.setUint32(OFF_EXIT_REASON, KVM_EXIT.HYPERCALL, true);
      dv.setBigUint64(32, nr, true);
      [a0, a1, a2, 0n, 0n, 0n].forEach((v, i) => dv.setBigUint64(40 + 8 * i, v, true));
      dv.setBigUint64(88, 0n, true);
      dv.setBigUint64(96, 0n, true); // flags: not KVM_EXIT_HYPERCALL_LONG_MODE (the guest is in real mode)
      return 'exit';
    };
    return {
      get runArea() {
        return r.runArea;
      },
      get running() {
        return r.running;
      },
      get closed() {
        return r.closed;
      },
      run: async () => {
        if (immediateExit() && before()) return -4;
        before();
        for (;;) {
          const res = await r.run();
          if (after(res) === 'exit') return res;
        }
      },
      runSync: () => {
        if (immediateExit() && before()) return -4;
        before();
        for (;;) {
          const res = r.runSync();
          if (after(res) === 'exit') return res;
        }
      },
      kick: () => r.kick(),
      close: () => r.close(),
    };
  }
}

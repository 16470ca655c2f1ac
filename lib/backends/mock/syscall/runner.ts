/**
 * KVM_RUN on the mock: the pure mock executes no guest code, so a run that the kernel would let
 * reach the guest fails with ERR_KVM_SEV_MOCK_NO_EXECUTION (the hybrid backend runs guests). What
 * the kernel answers before entering the guest comes first: EBADF for a closed vCPU, EIO for a dead
 * VM, EINVAL for an SEV-type VM before INIT2 (svm_vcpu_pre_run), and -EINTR (resolved) after kick().
 */
import type { VcpuRunHandle } from '../../../backend/contract.js';
import { KvmSevError, errnoError } from '../../../backend/errors.js';
import { E } from '../kernel/common/errno.js';
import type { MockFd } from '../kernel/common/files.js';
import type { MockVcpu } from '../kernel/kvm/vcpu.js';
import type { MockVm } from '../kernel/kvm/vm.js';
import type { UserMemory } from '../kernel/common/user-memory.js';
import { checkRequests, completePending, step } from '../kernel/kvm/guest-ops.js';

export class MockRunner implements VcpuRunHandle {
  readonly runArea: ArrayBuffer;
  private readonly fd: MockFd;
  private readonly vm: MockVm;
  private readonly vcpu: MockVcpu;
  private kicked = false;
  private isClosed = false;

  private readonly mem: UserMemory;

  constructor(fd: MockFd, vm: MockVm, vcpu: MockVcpu, mmapSize: number, mem: UserMemory) {
    this.fd = fd;
    this.vm = vm;
    this.vcpu = vcpu;
    this.mem = mem;
    this.runArea = new ArrayBuffer(mmapSize);
  }

  get running(): boolean {
    return false;
  }
  get closed(): boolean {
    return this.isClosed;
  }

  runSync(): number {
    if (this.isClosed || this.fd.closed) throw errnoError(E.EBADF, 'ioctl', 'KVM_RUN');
    if (this.vm.dead) throw errnoError(E.EIO, 'ioctl', 'KVM_RUN');
    if (this.vm.sev.info.needInit) throw errnoError(E.EINVAL, 'ioctl', 'KVM_RUN');
    const run = new DataView(this.runArea);
    // immediate_exit, or a kick: -EINTR before entering the guest, after completing the last exit.
    if (this.kicked || run.getUint8(1)) {
      completePending(this.vcpu, run);
      this.kicked = false;
      run.setUint8(1, 0); // the runner clears immediate_exit after each KVM_RUN, as the native one does
      return -E.EINTR;
    }
    completePending(this.vcpu, run);
    const page = new Uint8Array(this.runArea);
    if (checkRequests(this.vcpu, run)) {
      this.vcpu.counters.exits++;
      return 0;
    }
    for (let o = this.vcpu.guestOps.shift(); o; o = this.vcpu.guestOps.shift()) {
      if (step(this.vm, this.vcpu, this.mem, run, page, o)) {
        this.vcpu.counters.exits++;
        return 0;
      }
    }
    throw new KvmSevError(
      'ERR_KVM_SEV_MOCK_NO_EXECUTION',
      `the mock backend executes no guest code (vCPU ${this.vcpu.id}): KVM_RUN needs a CPU. ` +
        'Use the hybrid backend (real KVM with the mocked SEV), or the native backend on a KVM host.',
    );
  }

  run(): Promise<number> {
    try {
      return Promise.resolve(this.runSync());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  kick(): void {
    this.kicked = true;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    structuredClone(this.runArea, { transfer: [this.runArea] });
  }
}

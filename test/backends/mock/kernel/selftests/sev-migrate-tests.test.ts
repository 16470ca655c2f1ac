/**
 * tools/testing/selftests/kvm/x86/sev_migrate_tests.c, re-created at the raw ioctl level on the
 * kernels that have KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM and KVM_CAP_VM_COPY_ENC_CONTEXT_FROM (the 6.12
 * and 7.2 profiles; the 2021 kernel predates both, so main()'s TEST_REQUIRE skips it). Every function
 * of the selftest that needs no SNP: test_sev_migrate_from (SEV and SEV-ES), test_sev_migrate_locking,
 * test_sev_migrate_parameters, test_sev_move_copy, test_sev_mirror (SEV and SEV-ES) and
 * test_sev_mirror_parameters. The locking test's threads are async callers of `ioctlAsync`: the mock
 * kernel interleaves them as threads would, so they meet sev_lock_two_vms()'s EBUSY, and must never
 * deadlock.
 */
import test, { type ExecutionContext } from 'ava';
import { KVM_CAP, KVM_SEV } from '../../../../../lib/uapi/constants.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { kvm_enable_cap } from '../../../../../lib/uapi/kvm-structs.js';
import { SEV_POLICY_ES, SelftestHost, type SelftestVm } from './selftest-lib.js';

const NR_MIGRATE_TEST_VCPUS = 4;
const NR_MIGRATE_TEST_VMS = 3;
const NR_LOCK_TESTING_THREADS = 3;
const NR_LOCK_TESTING_ITERATIONS = 10000;
/** KVM_SEV_NR_MAX of each kernel's header (6.12 ends at SNP_LAUNCH_FINISH, 7.2 at SNP_ENABLE_REQ_CERTS). */
const KVM_SEV_NR_MAX = { '6.12': 103, '7.2': 104 } as const;
const KERNELS = ['6.12', '7.2'] as const;
type Kernel = (typeof KERNELS)[number];

/** main()'s requirements, then the helpers over one host. */
function setup(t: ExecutionContext, kernel: Kernel) {
  const h = new SelftestHost(t, { kernel });
  t.is(h.checkCap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM), 1, 'TEST_REQUIRE(KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM)');
  t.is(h.checkCap(KVM_CAP.VM_COPY_ENC_CONTEXT_FROM), 1, 'TEST_REQUIRE(KVM_CAP_VM_COPY_ENC_CONTEXT_FROM)');
  t.true(h.cpuHas('SEV'), 'TEST_REQUIRE(X86_FEATURE_SEV)');
  const haveSevEs = h.cpuHas('SEV_ES');
  t.true(haveSevEs, 'the default processor has SEV-ES, so every ES path runs');
  /** sev_vm_create(): a default VM, INIT or ES_INIT, four vCPUs, sev_vm_launch() (LAUNCH_UPDATE_VMSA for ES). */
  const sevVmCreate = (es: boolean): SelftestVm => {
    const vm = h.vmCreateBarebones();
    vm.sevInit(es);
    for (let i = 0; i < NR_MIGRATE_TEST_VCPUS; ++i) vm.vcpuAdd(i);
    vm.sevLaunch(es ? SEV_POLICY_ES : 0);
    return vm;
  };
  /** aux_vm_create() */
  const auxVmCreate = (withVcpus: boolean): SelftestVm => {
    const vm = h.vmCreateBarebones();
    if (withVcpus) for (let i = 0; i < NR_MIGRATE_TEST_VCPUS; ++i) vm.vcpuAdd(i);
    return vm;
  };
  /** Nothing left behind once every VM is freed: no SEV VM, no ASID held. */
  const clean = () => {
    const s = h.host.sev.snapshot();
    t.deepEqual(s.vms, [], 'every VM is gone');
    t.deepEqual(s.asidsHeld, [], 'every ASID is back');
  };
  return { h, sevVmCreate, auxVmCreate, clean };
}

for (const kernel of KERNELS) {
  for (const es of [false, true]) {
    test(`${kernel}: sev_migrate_tests test_sev_migrate_from(es=${es}): a chain of moves; the first source is dead (EIO)`, (t) => {
      const { h, sevVmCreate, auxVmCreate, clean } = setup(t, kernel);
      const srcVm = sevVmCreate(es);
      const handle = srcVm.guestStatus().handle;
      const dstVms = Array.from({ length: NR_MIGRATE_TEST_VMS }, () => auxVmCreate(true));
      // Initial migration from the src to the first dst.
      t.is(dstVms[0]!.migrateFrom(srcVm), 'ok');
      for (let i = 1; i < NR_MIGRATE_TEST_VMS; i++) t.is(dstVms[i]!.migrateFrom(dstVms[i - 1]!), 'ok');
      // Migrate the guest back to the original VM.
      t.is(srcVm.migrateFrom(dstVms[NR_MIGRATE_TEST_VMS - 1]!), 'EIO', 'VM that was migrated from should be dead');
      // The context lives on in one VM (MOVE does not carry sev->fd, so the selftest asks no firmware there).
      t.like(
        h.host.sev.snapshot().vms.filter((v) => v.active),
        [{ handle, dead: false }],
      );
      srcVm.close();
      for (const vm of dstVms) vm.close();
      clean();
    });
  }

  test(`${kernel}: sev_migrate_tests test_sev_migrate_locking: three threads move among three VMs; EBUSY, never a deadlock`, async (t) => {
    const { h, sevVmCreate, clean } = setup(t, kernel);
    const vms = Array.from({ length: NR_LOCK_TESTING_THREADS }, () => sevVmCreate(false));
    const seen = new Map<string, number>();
    // locking_test_thread(): __sev_migrate_from(input->vm, input->source_vms[i % 3]), results ignored.
    const thread = async (vm: SelftestVm) => {
      for (let i = 0; i < NR_LOCK_TESTING_ITERATIONS; ++i) {
        const src = vms[i % NR_LOCK_TESTING_THREADS]!;
        const arg = kvm_enable_cap.arg({ cap: KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM, args: [BigInt(src.fd.fd), 0n, 0n, 0n] });
        const code = await h.host.ioctlAsync(vm.fd, ioc.KVM_ENABLE_CAP, arg).then(
          () => 'ok',
          (e: { code: string }) => e.code,
        );
        seen.set(code, (seen.get(code) ?? 0) + 1);
      }
    };
    await Promise.all(vms.map((vm) => thread(vm))); // pthread_join(): all threads end
    t.is(
      [...seen.values()].reduce((a, b) => a + b, 0),
      NR_LOCK_TESTING_THREADS * NR_LOCK_TESTING_ITERATIONS,
    );
    // Every destination is an SEV guest already and the source may be itself: EINVAL, or EBUSY when
    // another thread's move holds either VM (sev_lock_two_vms()'s migration_in_progress).
    t.deepEqual([...seen.keys()].sort(), ['EBUSY', 'EINVAL']);
    for (const vm of vms) t.like(vm.guestStatus(), { state: 1 }, 'no VM lost its context');
    for (const vm of vms) vm.close();
    clean();
  });

  test(`${kernel}: sev_migrate_tests test_sev_migrate_parameters: EINVAL without SEV, to an SEV VM, across SEV/SEV-ES, vCPU counts, no VMSA`, (t) => {
    const { h, sevVmCreate, auxVmCreate, clean } = setup(t, kernel);
    const vmNoVcpu = h.vmCreateBarebones();
    const vmNoSev = auxVmCreate(true);
    t.is(vmNoVcpu.migrateFrom(vmNoSev), 'EINVAL', 'Migrations require SEV enabled');
    const sevVm = sevVmCreate(false);
    const sevEsVm = sevVmCreate(true);
    const sevEsVmNoVmsa = h.vmCreateBarebones();
    sevEsVmNoVmsa.sevInit(true);
    sevEsVmNoVmsa.vcpuAdd(1);
    t.is(sevVm.migrateFrom(sevEsVm), 'EINVAL', 'Should not be able migrate to SEV enabled VM');
    t.is(sevEsVm.migrateFrom(sevVm), 'EINVAL', 'Should not be able migrate to SEV-ES enabled VM');
    t.is(vmNoVcpu.migrateFrom(sevEsVm), 'EINVAL', 'SEV-ES migrations require same number of vCPUS');
    t.is(vmNoVcpu.migrateFrom(sevEsVmNoVmsa), 'EINVAL', 'SEV-ES migrations require UPDATE_VMSA');
    for (const vm of [sevVm, sevEsVm, sevEsVmNoVmsa, vmNoVcpu, vmNoSev]) vm.close();
    clean();
  });

  test(`${kernel}: sev_migrate_tests test_sev_move_copy: mirrors and owners move independently; either may be freed first`, (t) => {
    const { h, sevVmCreate, auxVmCreate, clean } = setup(t, kernel);
    let sevVm = sevVmCreate(false);
    let dstVm = auxVmCreate(true);
    const dst2Vm = auxVmCreate(true);
    const dst3Vm = auxVmCreate(true);
    let mirrorVm = auxVmCreate(false);
    let dstMirrorVm = auxVmCreate(false);
    const dst2MirrorVm = auxVmCreate(false);
    const dst3MirrorVm = auxVmCreate(false);
    t.is(mirrorVm.mirrorFrom(sevVm), 'ok');
    t.is(dstMirrorVm.migrateFrom(mirrorVm), 'ok');
    t.is(dstVm.migrateFrom(sevVm), 'ok');
    t.is(dst2Vm.migrateFrom(dstVm), 'ok');
    t.is(dst2MirrorVm.migrateFrom(dstMirrorVm), 'ok');
    t.is(dst3MirrorVm.migrateFrom(dst2MirrorVm), 'ok');
    t.is(dst3Vm.migrateFrom(dst2Vm), 'ok');
    const active = h.host.sev.snapshot().vms.filter((v) => v.active);
    t.is(active.length, 2, 'one owner and one mirror hold the context');
    t.deepEqual(active.map((v) => v.mirror).sort(), [false, true]);
    t.is(active[0]!.handle, active[1]!.handle);
    for (const vm of [dstVm, sevVm, dst2Vm, dst3Vm, mirrorVm, dstMirrorVm, dst2MirrorVm, dst3MirrorVm]) vm.close();
    clean();
    // Run similar test be destroy mirrors before mirrored VMs to ensure destruction is done safely.
    sevVm = sevVmCreate(false);
    dstVm = auxVmCreate(true);
    mirrorVm = auxVmCreate(false);
    dstMirrorVm = auxVmCreate(false);
    t.is(mirrorVm.mirrorFrom(sevVm), 'ok');
    t.is(dstMirrorVm.migrateFrom(mirrorVm), 'ok');
    t.is(dstVm.migrateFrom(sevVm), 'ok');
    for (const vm of [mirrorVm, dstMirrorVm, dstVm, sevVm]) vm.close();
    clean();
  });

  for (const es of [false, true]) {
    test(`${kernel}: sev_migrate_tests test_sev_mirror(es=${es}): a mirror takes vCPUs and only LAUNCH_UPDATE_VMSA, GUEST_STATUS and DBG_*`, (t) => {
      const { sevVmCreate, auxVmCreate, clean } = setup(t, kernel);
      const srcVm = sevVmCreate(es);
      const dstVm = auxVmCreate(false);
      t.is(dstVm.mirrorFrom(srcVm), 'ok');
      // Check that we can complete creation of the mirror VM.
      for (let i = 0; i < NR_MIGRATE_TEST_VCPUS; ++i) dstVm.vcpuAdd(i);
      if (es) dstVm.sev(KVM_SEV.LAUNCH_UPDATE_VMSA);
      // verify_mirror_allowed_cmds(): every other id, with NULL data (refused before it is read).
      const refused: number[] = [];
      for (let cmdId = KVM_SEV.INIT; cmdId < KVM_SEV_NR_MAX[kernel]; ++cmdId) {
        if (([KVM_SEV.LAUNCH_UPDATE_VMSA, KVM_SEV.GUEST_STATUS, KVM_SEV.DBG_DECRYPT, KVM_SEV.DBG_ENCRYPT] as number[]).includes(cmdId))
          continue;
        const a = dstVm.sevIoctl(cmdId);
        if (a.code !== 'EINVAL') t.fail(`Should not be able call command: ${cmdId}. errno: ${a.code}`);
        refused.push(cmdId);
      }
      t.is(refused.length, KVM_SEV_NR_MAX[kernel] - 4);
      t.like(dstVm.guestStatus(), { handle: srcVm.guestStatus().handle, policy: es ? SEV_POLICY_ES : 0 });
      srcVm.close();
      dstVm.close();
      clean();
    });
  }

  test(`${kernel}: sev_migrate_tests test_sev_mirror_parameters: EINVAL to itself, without SEV, with vCPUs, to an SEV VM, across SEV/SEV-ES`, (t) => {
    const { sevVmCreate, auxVmCreate, clean } = setup(t, kernel);
    const sevVm = sevVmCreate(false);
    const vmWithVcpu = auxVmCreate(true);
    const vmNoVcpu = auxVmCreate(false);
    t.is(sevVm.mirrorFrom(sevVm), 'EINVAL', 'Should not be able copy context to self');
    t.is(vmNoVcpu.mirrorFrom(vmWithVcpu), 'EINVAL', 'Copy context requires SEV enabled');
    t.is(vmWithVcpu.mirrorFrom(sevVm), 'EINVAL', 'SEV copy context requires no vCPUS on the destination');
    const sevEsVm = sevVmCreate(true);
    t.is(sevVm.mirrorFrom(sevEsVm), 'EINVAL', 'Should not be able copy context to SEV enabled VM');
    t.is(sevEsVm.mirrorFrom(sevVm), 'EINVAL', 'Should not be able copy context to SEV-ES enabled VM');
    for (const vm of [sevEsVm, sevVm, vmWithVcpu, vmNoVcpu]) vm.close();
    clean();
  });
}

test('local-migration-2021: sev_migrate_tests main() skips: the kernel has neither MOVE nor COPY', (t) => {
  const h = new SelftestHost(t, { kernel: 'local-migration-2021' });
  t.is(h.checkCap(KVM_CAP.VM_MOVE_ENC_CONTEXT_FROM), 0);
  t.is(h.checkCap(KVM_CAP.VM_COPY_ENC_CONTEXT_FROM), 0);
});

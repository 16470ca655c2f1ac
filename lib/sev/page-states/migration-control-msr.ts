/**
 * MSR_KVM_MIGRATION_CONTROL (0x4b564d08; Documentation/virt/kvm/x86/msr.rst): bit 0,
 * KVM_MIGRATION_READY, says the guest reports its page states and may be migrated. KVM does not
 * emulate it: hypercalls.rst asks user space to "set up an MSR filter to process writes to
 * MSR_KVM_MIGRATION_CONTROL". The guest (arch/x86/kernel/kvm.c) writes 1 once it has reported its
 * shared pages and 0 on every CPU on reboot, kexec and CPU offline (kvm_guest_cpu_offline()). The value
 * is the VM's, not a vCPU's, and the VMM must migrate it itself (it is not in KVM_GET_MSRS).
 */
import type { VcpuExit } from '../../kvm/exits.js';
import { MSR_KVM_MIGRATION_CONTROL } from '../../uapi/constants.js';
import type { PageStateTracker } from './page-state-tracker.js';

/** Serves an RDMSR/WRMSR exit of MSR_KVM_MIGRATION_CONTROL from `vcpu`; false for any other exit. */
export function handleMigrationControlMsr(tracker: PageStateTracker, vcpu: number, exit: VcpuExit): boolean {
  if ((exit.reason !== 'rdmsr' && exit.reason !== 'wrmsr') || exit.index !== MSR_KVM_MIGRATION_CONTROL) return false;
  if (exit.reason === 'rdmsr') exit.reply({ data: tracker.readMigrationControl() });
  else if (tracker.writeMigrationControl(vcpu, exit.data)) exit.reply({});
  else exit.reply({ error: true }); // reserved bits: #GP, as for KVM's own PV MSRs
  return true;
}

/**
 * The kexec race of the v12 SEV live-migration patches as guest steps (Steve Rutherford, "Re: [PATCH v12 13/13] x86/kvm: Add kexec support
 * for SEV Live Migration", LKML April 2021): the old boot shares pages; on its way down vCPU 0 clears
 * MSR_KVM_MIGRATION_CONTROL and resets the shared list by marking all RAM encrypted; vCPU 1, whose
 * reboot is still pending, finishes a device request and shares a page after that reset; the new boot
 * shares its own page and sets the MSR again. `oneVcpu`: the same interleaving on a single vCPU (a
 * thread racing with itself), which only explicit boot IDs can tell apart.
 */
import type { PageStateStep } from '../../lib/app/guest/page-state-programs.js';

const ENC = 0x10;
/** kvm-sev's opt-in boot ID in attrs bits 31:16. */
const id = (n: number) => n << 16;

/** vCPU 0 and vCPU 1, and the schedule: vCPU 0 to its first and second sync, then vCPU 1 to its end. */
export function kexecRace(): { vcpus: PageStateStep[][]; schedule: number[]; newBootShared: number[] } {
  return {
    vcpus: [
      [
        { op: 'msr', value: 1 },
        { op: 'map', gpa: 0x8000, pages: 2, attrs: 0 }, // the old boot's shared pages 8, 9
        { op: 'sync' },
        { op: 'msr', value: 0 }, // kvm_guest_cpu_offline() on the way down
        { op: 'map', gpa: 0, pages: 16, attrs: ENC }, // the reset: all RAM encrypted
        { op: 'sync' },
        { op: 'map', gpa: 0xc000, pages: 1, attrs: 0 }, // the new boot's __bss_decrypted
        { op: 'msr', value: 1 },
      ],
      [
        { op: 'map', gpa: 0xa000, pages: 1, attrs: 0 }, // the old boot's device work, landing after the reset
        { op: 'msr', value: 0 },
      ],
    ],
    schedule: [0, 0, 1],
    newBootShared: [12],
  };
}

/** The same on one vCPU, with boot IDs 1 (old) and 2 (new). */
export function kexecRaceOneVcpu(): { vcpus: PageStateStep[][]; newBootShared: number[] } {
  return {
    vcpus: [
      [
        { op: 'msr', value: 1 },
        { op: 'map', gpa: 0x8000, pages: 2, attrs: id(1) },
        { op: 'msr', value: 0 },
        { op: 'map', gpa: 0, pages: 16, attrs: ENC | id(2) },
        { op: 'map', gpa: 0xa000, pages: 1, attrs: id(1) }, // late, from the old boot
        { op: 'map', gpa: 0xc000, pages: 1, attrs: id(2) },
        { op: 'msr', value: 1 },
      ],
    ],
    newBootShared: [12],
  };
}

/** The page indexes (of 16) the tracker says are shared. */
export function sharedPages(tracker: { pageState(gpa: bigint): string }): number[] {
  const out: number[] = [];
  for (let p = 0; p < 16; p++) if (tracker.pageState(BigInt(p) << 12n) === 'shared') out.push(p);
  return out;
}

/**
 * The VMM's side of hypercall 12, KVM_HC_MAP_GPA_RANGE (Documentation/virt/kvm/x86/hypercalls.rst):
 * the guest reports that [gpa, gpa + npages * 4 KiB) is now encrypted (attrs bit 4) or plaintext;
 * attrs bits 3:0 are a page-size hint (0 4K, 1 2M, 2 1G). KVM forwards it as KVM_EXIT_HYPERCALL when
 * enabled with KVM_CAP_EXIT_HYPERCALL, after checking only alignment and npages
 * (arch/x86/kvm/x86.c: kvm_emulate_hypercall()); the attributes are the VMM's to check. The answer
 * goes in kvm_run.hypercall.ret, which complete_hypercall_exit() puts in RAX on the next KVM_RUN, so it
 * is written on every path (older VMMs left it unset and KVM began zeroing it before the exit, 2025).
 * The guest side: arch/x86/mm/mem_encrypt_amd.c enc_dec_hypercall(), arch/x86/kernel/kvm.c.
 */
import type { VcpuExit } from '../../kvm/exits.js';
import { KVM_HC_MAP_GPA_RANGE, KVM_MAP_GPA_RANGE } from '../../uapi/constants.js';
import type { PageStateTracker } from './page-state-tracker.js';

const KVM_EINVAL = 22n;
/** kvm-sev's opt-in boot ID field (boot-generations.ts): attrs bits 31:16. */
export const MAP_GPA_RANGE_BOOT_ID_SHIFT = 16n;
const SIZE_MASK = 0xfn;

export type MapGpaRangeAttrs = { encrypted: boolean; pageSize: '4K' | '2M' | '1G'; bootId: number } | { error: string };

/** Decodes attrs; reserved bits (63:5, or 63:32 and 15:5 with boot IDs) are an error. */
export function decodeMapGpaRangeAttrs(attrs: bigint, explicitGenerationIds: boolean): MapGpaRangeAttrs {
  const size = attrs & SIZE_MASK;
  const known = explicitGenerationIds ? 0xffff_0000n | 0x1fn : 0x1fn;
  if (attrs & ~known) return { error: `attrs 0x${attrs.toString(16)}: reserved bits set` };
  if (size > BigInt(KVM_MAP_GPA_RANGE.PAGE_SZ_1G))
    return { error: `attrs 0x${attrs.toString(16)}: page-size hint ${size} is not 4K, 2M or 1G` };
  return {
    encrypted: (attrs & BigInt(KVM_MAP_GPA_RANGE.ENCRYPTED)) !== 0n,
    pageSize: (['4K', '2M', '1G'] as const)[Number(size)]!,
    bootId: explicitGenerationIds ? Number((attrs >> MAP_GPA_RANGE_BOOT_ID_SHIFT) & 0xffffn) : 0,
  };
}

/**
 * Serves a KVM_EXIT_HYPERCALL of KVM_HC_MAP_GPA_RANGE from `vcpu`: updates the tracker and writes the
 * answer. Returns false (and touches nothing) for any other exit.
 */
export function handleMapGpaRange(tracker: PageStateTracker, vcpu: number, exit: VcpuExit): boolean {
  if (exit.reason !== 'hypercall' || exit.nr !== BigInt(KVM_HC_MAP_GPA_RANGE)) return false;
  const [gpa = 0n, npages = 0n, attrs = 0n] = exit.args;
  const a = decodeMapGpaRangeAttrs(attrs, tracker.explicitGenerationIds);
  if ('error' in a) {
    tracker.noteInvalid(vcpu, gpa, npages, a.error);
    exit.reply(-KVM_EINVAL);
    return true;
  }
  exit.reply(tracker.mapGpaRange(vcpu, gpa, npages, a.encrypted, a.bootId).ret);
  return true;
}

/**
 * tools/testing/selftests/kvm/x86/sev_dbg_test.c, re-created at the raw ioctl level: DBG_ENCRYPT then
 * DBG_DECRYPT must round-trip exactly for every size of its list (1, 8, 15, 16, 17, 32, 33, and each
 * from a page and from two pages, up or down) at host and guest offsets around 16 bytes and around the
 * page boundary, in an SEV and an SEV-ES VM. The selftest arrived with the 2026 rewrite of the debug
 * {de,en}crypt flows (the '7.2' profile passes all of it); on the '6.12' profile it fails where that
 * kernel's __sev_dbg_encrypt_user() loses bytes, and the re-creation pins the first failure.
 *
 * As in C: `src` and `dst` are page-aligned process buffers of two pages (here anonymous mappings),
 * `data` is two pages of guest memory, and the first failed assertion ends the run.
 */
import test, { type ExecutionContext } from 'ava';
import type { GuestMapping } from '../../../../../lib/backend/contract.js';
import { KVM_CAP, KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM } from '../../../../../lib/uapi/constants.js';
import { at, SEV_POLICY_ES, SelftestHost, type SelftestVm } from './selftest-lib.js';

const PAGE_SIZE = 4096;
const BUFFER_SIZE = PAGE_SIZE * 2;
/** Where vm_alloc() put `data` in the guest's memory slot. */
const DATA_OFFSET = 4 * PAGE_SIZE;

class Failure extends Error {}

/** kvm_random_u32(): any sequence will do; a fixed one keeps the run reproducible. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

interface Run {
  vm: SelftestVm;
  guest: GuestMapping;
  src: GuestMapping;
  dst: GuestMapping;
  srcBytes: Uint8Array;
  dstBytes: Uint8Array;
  random: () => number;
  cases: number;
}

const check = (ok: boolean, msg: () => string): void => {
  if (!ok) throw new Failure(msg());
};

/** validate_dst(): as the C loop does, from `i` up to (not including) `nrBytes`. */
function validateDst(r: Run, i: number, nrBytes: number, pattern: number): void {
  for (; i < nrBytes; i++)
    check(r.dstBytes[i] === pattern, () => `Expected 0x${pattern.toString(16)} at byte ${i}, got 0x${r.dstBytes[i]!.toString(16)}`);
}

/** validate_buffers() */
function validateBuffers(r: Run): void {
  if (Buffer.compare(r.srcBytes, r.dstBytes) === 0) return;
  const i = r.srcBytes.findIndex((b, k) => b !== r.dstBytes[k]);
  check(false, () => `Expected src[${i}] (0x${r.srcBytes[i]!.toString(16)}) == dst[${i}] (0x${r.dstBytes[i]!.toString(16)})`);
}

function encrypt(r: Run, j: number, i: number, n: number): void {
  const a = r.vm.dbg(false, at(r.guest, DATA_OFFSET + j, n), at(r.src, i, n));
  check(a.code === 'ok' && a.error === 0, () => `DBG_ENCRYPT: ${a.code}, error ${a.error}`);
}

function decrypt(r: Run, i: number, j: number, n: number): void {
  const a = r.vm.dbg(true, at(r.dst, i, n), at(r.guest, DATA_OFFSET + j, n));
  check(a.code === 'ok' && a.error === 0, () => `DBG_DECRYPT: ${a.code}, error ${a.error}`);
}

/** ____test_sev_dbg() */
function oneCase(r: Run, i: number, j: number, nrBytes: number): void {
  const pattern = r.random() & 0xff;
  if (i + nrBytes > BUFFER_SIZE || j + nrBytes > BUFFER_SIZE) return;
  r.cases++;
  try {
    r.srcBytes.fill(pattern, i, i + nrBytes);
    encrypt(r, j, i, nrBytes);
    decrypt(r, i, j, nrBytes);
    validateBuffers(r);
    validateDst(r, i, nrBytes, pattern);
  } catch (e) {
    if (e instanceof Failure) e.message = `(i=${i}, j=${j}, nr_bytes=${nrBytes}): ${e.message}`;
    throw e;
  }
}

/** __test_sev_dbg(): sizes and offsets around the chunk (16 bytes) and the page. */
function sizeRound(r: Run, nrBytes: number): void {
  const x = [1, 8, 15, 16, 23];
  const p = PAGE_SIZE - 24;
  oneCase(r, 0, 0, nrBytes);
  for (const xi of x) {
    for (const xj of x) {
      oneCase(r, xi, xj, nrBytes);
      oneCase(r, xi, p + xj, nrBytes);
      oneCase(r, p + xi, xj, nrBytes);
      oneCase(r, p + xi, p + xj, nrBytes);
    }
  }
}

/** test_sev_dbg(type, policy): undefined when the VM type is not offered; else the case count, or the first failure. */
function testSevDbg(
  t: ExecutionContext,
  kernel: '6.12' | '7.2',
  type: number,
  policy: number,
): { cases: number; failure?: string } | undefined {
  const h = new SelftestHost(t, { kernel });
  if (!(h.checkCap(KVM_CAP.VM_TYPES) & (1 << type))) return undefined;
  // vm_sev_create_with_one_vcpu(): the VM, INIT2 (kvm_arch_vm_post_create()), guest memory, one vCPU.
  const vm = h.vmCreateBarebones(type);
  vm.sevInit(type === KVM_X86_SEV_ES_VM);
  const guest = vm.addMemory(0, 0n, 16 * PAGE_SIZE);
  vm.vcpuAdd(0);
  new Uint8Array(guest.buffer).fill(0xaa, DATA_OFFSET, DATA_OFFSET + BUFFER_SIZE);
  vm.vmSevLaunch(policy);
  const src = h.host.mmapAnonymous(BUFFER_SIZE);
  const dst = h.host.mmapAnonymous(BUFFER_SIZE);
  t.teardown(() => [src, dst].forEach((m) => m.unmap()));
  const r: Run = {
    vm,
    guest,
    src,
    dst,
    srcBytes: new Uint8Array(src.buffer),
    dstBytes: new Uint8Array(dst.buffer),
    random: rng(0x5e7db9),
    cases: 0,
  };
  try {
    decrypt(r, 0, 0, BUFFER_SIZE);
    validateDst(r, 0, BUFFER_SIZE, 0xaa);
    r.srcBytes.fill(0x55);
    encrypt(r, 0, 0, BUFFER_SIZE);
    decrypt(r, 0, 0, BUFFER_SIZE);
    validateDst(r, 0, BUFFER_SIZE, 0x55);
    sizeRound(r, PAGE_SIZE);
    for (const size of [1, 8, 15, 16, 17, 32, 33]) {
      sizeRound(r, size);
      sizeRound(r, PAGE_SIZE - size);
      sizeRound(r, PAGE_SIZE + size);
      sizeRound(r, BUFFER_SIZE - size);
    }
  } catch (e) {
    if (!(e instanceof Failure)) throw e;
    return { cases: r.cases, failure: e.message };
  }
  return { cases: r.cases };
}

// main(): "KVM doesn't support {de,en}crypt commands for SNP", so an SEV and an SEV-ES VM.
const VMS = [
  { name: 'KVM_X86_SEV_VM', type: KVM_X86_SEV_VM, policy: 0 },
  { name: 'KVM_X86_SEV_ES_VM', type: KVM_X86_SEV_ES_VM, policy: SEV_POLICY_ES },
];

for (const v of VMS) {
  test(`7.2: sev_dbg_test test_sev_dbg(${v.name}): every size at every offset round-trips`, (t) => {
    const out = testSevDbg(t, '7.2', v.type, v.policy);
    t.truthy(out, 'the VM type is offered');
    t.is(out!.failure, undefined);
    // 29 size rounds of 1 + 25 × 4 offset pairs: 2929, of which 1990 fit in two pages (the rest return early, as in C).
    t.is(out!.cases, 1990);
  });

  test(`6.12: sev_dbg_test test_sev_dbg(${v.name}) fails where 6.12's DBG_ENCRYPT runs past the guest page`, (t) => {
    const out = testSevDbg(t, '6.12', v.type, v.policy);
    t.truthy(out);
    // (1, PAGE_SIZE - 24 + 1, PAGE_SIZE): the encrypt step bounded by the source page writes 4095 bytes
    // from guest offset 4073 into the physically next frame; the guest's second page keeps what the case
    // before wrote, which DBG_DECRYPT returns at dst[24].
    t.regex(out!.failure ?? '', /^\(i=1, j=4073, nr_bytes=4096\): Expected src\[24\] \(0x[0-9a-f]+\) == dst\[24\] \(0x[0-9a-f]+\)$/);
  });
}

/**
 * A running guest moves to a new VM without copying its memory: the new VM maps the same memfd,
 * the vCPU state is saved and restored, and the guest's counter continues with no step lost or
 * repeated. (The cross-process handoff builds on exactly this.)
 */
import { Kvm } from '../lib/kvm/kvm.js';
import { NativeBackend } from '../lib/backends/native/native-backend.js';
import { counterProgram } from '../lib/app/guest/programs.js';
import { loadProgram } from '../lib/app/guest/setup.js';
import { GuestMemory } from '../lib/kvm/guest-memory.js';
import { decodeVcpuState, encodeVcpuState, restoreVcpuState, saveVcpuState } from '../lib/kvm/vcpu-state.js';
import type { Vcpu } from '../lib/kvm/vcpu.js';
import { hwTest, kvmDevice } from '../test/helpers/hw.js';

const PORT = 0x500;

async function counts(vcpu: Vcpu, n: number): Promise<number[]> {
  const seen: number[] = [];
  while (seen.length < n) {
    const e = await vcpu.run();
    if (e.reason !== 'io' || e.port !== PORT) throw new Error(`unexpected exit ${e.reason}`);
    seen.push(new DataView(e.data.buffer, e.data.byteOffset, 4).getUint32(0, true));
  }
  return seen;
}

hwTest(kvmDevice(), 'save/restore of vCPU state continues the guest exactly in a new VM over the same memfd', async (t) => {
  using kvm = Kvm.open({ backend: new NativeBackend() });
  const a = kvm.createVm();
  t.teardown(() => a.close()); // and with it its memory and the memfd
  const mem = a.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'handover-test' });
  const va = a.createVcpu(0);
  va.setCpuid2(kvm.supportedCpuid());
  loadProgram(mem, va, counterProgram(0x2000, PORT));
  const first = await counts(va, 1000);
  t.deepEqual(first.slice(0, 3), [1, 2, 3]);
  va.completePendingIo();
  const state = decodeVcpuState(JSON.parse(JSON.stringify(encodeVcpuState(saveVcpuState(va)))));
  t.true(state.msrs.length > 0);

  // The new VM: same memfd pages (no copy), a fresh vCPU, the saved state.
  const b = kvm.createVm();
  t.teardown(() => b.close());
  const view = b.backend.mmapShared(mem.memfd!, 0x10000);
  t.teardown(() => {
    b.close(); // first: the mapping backs a memory slot of b
    view.unmap();
  });
  const memB = new GuestMemory(view, 0n);
  b.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0n, memory: memB });
  a.close(); // the old VM goes; the memfd's pages stay (the new mapping holds them)
  const vb = b.createVcpu(0);
  restoreVcpuState(vb, state);
  const next = await counts(vb, 1000);
  t.is(next[0], first[first.length - 1]! + 1, 'no step lost or repeated');
  t.true(next.every((v, i) => i === 0 || v === next[i - 1]! + 1));
  t.is(memB.readU32(0x2000n), next[next.length - 1]!);
  b.close();
  view.unmap();
  mem.memfd!.close();
});

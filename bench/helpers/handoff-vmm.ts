/**
 * The two VMMs of the handoff benchmark, as child processes.
 *   source <sock> <bytes> <mode>   mode 'fd': handOff (memfds over SCM_RIGHTS); 'copy': stream the memory
 *   target <sock> <bytes> <mode>
 * The guest (64-bit, lib/app/guest/page-toucher.ts) counts on a port in a loop; told so through its
 * mailbox, it writes to every 4 KiB page of its memory and reports on another port. Its memory is
 * <bytes> of RAM laid out as a PC does (vm.addRam: up to 3 GiB from 0, the rest from 4 GiB, clear of
 * the local APIC's page at 0xfee00000, which KVM treats as MMIO), memfd-backed, filled by the host. The source prints the CLOCK_MONOTONIC time (ns) of the guest's last
 * exit and how long one touch pass takes warm (before the handoff); the target the time of the first
 * exit and of the end of the first touch pass after it (full speed: every page mapped again).
 */
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { PAGE_TOUCHER, pageToucherProgram } from '../../lib/app/guest/page-toucher.js';
import { setupLongMode } from '../../lib/app/guest/setup.js';
import { ramEnd } from '../../lib/kvm/ram-layout.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { GuestMemory } from '../../lib/kvm/guest-memory.js';
import type { Vcpu } from '../../lib/kvm/vcpu.js';
import { decodeVcpuState, encodeVcpuState, restoreVcpuState, saveVcpuState } from '../../lib/kvm/vcpu-state.js';
import { handOff, takeOver } from '../../lib/migration/handoff.js';
import { MessageReader, sendMessage } from '../../lib/backend/framing.js';

const [role, path, bytesStr, mode] = process.argv.slice(2);
const size = Number(bytesStr);
const { PORT, DONE, MAILBOX } = PAGE_TOUCHER;
const backend = new NativeBackend();
const kvm = Kvm.open({ backend });
const now = () => process.hrtime.bigint();

async function exitOnce(vcpu: Vcpu, port = PORT): Promise<void> {
  const e = await vcpu.run();
  if (e.reason !== 'io' || e.port !== port) throw new Error(`unexpected exit ${e.reason} ${e.reason === 'io' ? e.port : ''}`);
}

/** One touch pass: the guest writes every page; resolves at its DONE exit. `mem`: the RAM at 0 (the mailbox's). */
async function touchAll(mem: GuestMemory, vcpu: Vcpu): Promise<void> {
  mem.writeU32(BigInt(MAILBOX), 1);
  for (;;) {
    const e = await vcpu.run();
    if (e.reason !== 'io') throw new Error(`unexpected exit ${e.reason}`);
    if (e.port === DONE) return;
  }
}

const CHUNK = 1 << 26; // 64 MiB per socket message in the copy path

if (role === 'source') {
  const vm = kvm.createVm();
  const ram = vm.addRam({ size, memfd: 'bench-guest' });
  const mem = ram[0]!;
  for (const m of ram)
    for (let off = 0; off < m.size; off += 1 << 30) m.fill(m.guestPhysAddr + BigInt(off), Math.min(1 << 30, m.size - off), 0); // host-touched
  const vcpu = vm.createVcpu(0);
  mem.write(BigInt(PAGE_TOUCHER.ORIGIN), pageToucherProgram({ ranges: ram }));
  setupLongMode(vcpu, { entry: PAGE_TOUCHER.ORIGIN, identityMapGiB: Math.ceil(Number(ramEnd(ram)) / 2 ** 30) });
  for (let i = 0; i < 100; i++) await exitOnce(vcpu);
  await touchAll(mem, vcpu); // the first pass maps every page here
  const w0 = now();
  await touchAll(mem, vcpu); // a warm pass: what full speed costs
  const warm = now() - w0;
  let last = now();
  const socket = backend.unixConnect(path!);
  if (mode === 'fd') {
    // The guest runs until the new VMM has prepared; the pause starts at its last exit here.
    let stop = false;
    const loop = (async () => {
      while (!stop) {
        await exitOnce(vcpu);
        last = now();
      }
    })();
    const r = await handOff({
      vm,
      vcpus: [vcpu],
      memory: ram,
      socket,
      pause: async () => {
        stop = true;
        await loop;
      },
    });
    if (r.owner !== 'target') throw new Error(`handoff failed: ${r.reason}`);
  } else {
    // The copy path: vCPU state as in a handoff, the memory streamed through the socket.
    await exitOnce(vcpu);
    last = now();
    vcpu.completePendingIo();
    await sendMessage(backend, socket, { state: encodeVcpuState(saveVcpuState(vcpu)), size });
    for (const m of ram)
      for (let off = 0; off < m.size; off += CHUNK)
        await backend.sendFds(socket, m.read(m.guestPhysAddr + BigInt(off), Math.min(CHUNK, m.size - off)), []);
    await new MessageReader(backend, socket).next(); // the target's "got it"
    vm.close();
  }
  console.log(JSON.stringify({ last: last.toString(), warm: warm.toString() }));
} else {
  const listener = backend.unixListen(path!);
  console.error('LISTENING');
  const socket = await backend.unixAccept(listener);
  let vcpu: Vcpu;
  let vm;
  let mem: GuestMemory;
  if (mode === 'fd') {
    const g = await takeOver({ kvm, socket });
    vcpu = g.vcpus[0]!;
    vm = g.vm;
    mem = g.memory[0]!;
  } else {
    const reader = new MessageReader(backend, socket);
    const head = await reader.next();
    vm = kvm.createVm();
    const ram = vm.addRam({ size });
    mem = ram[0]!;
    // Receive the memory straight into guest memory, chunk by chunk, the pieces in order.
    let piece = 0;
    let off = 0;
    const put = (data: Uint8Array) => {
      for (let at = 0; at < data.length;) {
        const m = ram[piece]!;
        const n = Math.min(data.length - at, m.size - off);
        m.write(m.guestPhysAddr + BigInt(off), data.subarray(at, at + n));
        at += n;
        off += n;
        if (off === m.size) [piece, off] = [piece + 1, 0];
      }
    };
    put(Buffer.concat((reader as unknown as { chunks: Buffer[] }).chunks)); // bytes that came with the header
    while (piece < ram.length) {
      const r = await backend.recvFds(socket, Math.min(1 << 20, ram[piece]!.size - off), 0);
      if (r.data.length === 0) throw new Error('source closed early');
      put(r.data);
    }
    vcpu = vm.createVcpu(0);
    restoreVcpuState(vcpu, decodeVcpuState(head.body['state']));
    await sendMessage(backend, socket, { ok: true });
  }
  await exitOnce(vcpu);
  const first = now();
  await touchAll(mem, vcpu);
  const full = now();
  console.log(JSON.stringify({ first: first.toString(), full: full.toString() }));
  vm.close();
  listener.close();
}
kvm.close();
process.exit(0);

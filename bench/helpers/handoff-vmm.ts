/**
 * The two VMMs of the handoff benchmark, as child processes.
 *   source <sock> <bytes> <mode>   mode 'fd': handOff (memfds over SCM_RIGHTS); 'copy': stream the memory
 *   target <sock> <bytes> <mode>
 * The guest (64-bit, see toucherProgram) counts on a port in a loop; told so through its mailbox, it
 * writes to every 4 KiB page of its memory and reports on another port. Its memory is a memfd of
 * <bytes>, filled by the host. The source prints the CLOCK_MONOTONIC time (ns) of the guest's last
 * exit and how long one touch pass takes warm (before the handoff); the target the time of the first
 * exit and of the end of the first touch pass after it (full speed: every page mapped again).
 */
import { NativeBackend } from '../../lib/backends/native/native-backend.js';
import { Asm, byte, dword, mem as at } from '../../lib/app/guest/asm.js';
import { setupLongMode } from '../../lib/app/guest/setup.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import type { GuestMemory } from '../../lib/kvm/guest-memory.js';
import type { Vcpu } from '../../lib/kvm/vcpu.js';
import { decodeVcpuState, encodeVcpuState, restoreVcpuState, saveVcpuState } from '../../lib/kvm/vcpu-state.js';
import { handOff, takeOver } from '../../lib/migration/handoff.js';
import { MessageReader, sendMessage } from '../../lib/backend/framing.js';

const [role, path, bytesStr, mode] = process.argv.slice(2);
const size = Number(bytesStr);
const PORT = 0x500;
const DONE = 0x501;
const COUNTER = 0x2000;
const MAILBOX = 0x2008;
const backend = new NativeBackend();
const kvm = Kvm.open({ backend });
const now = () => process.hrtime.bigint();

/**
 * ```
 * again:  inc dword [COUNTER]
 *         mov eax, [COUNTER]
 *         mov dx, PORT
 *         out dx, eax              ; the exit the handoff pauses between
 *         cmp dword [MAILBOX], 0
 *         je again
 *         mov dword [MAILBOX], 0
 *         xor ebx, ebx
 *         mov rcx, size / 4096
 * touch:  or byte [rbx], 0         ; a write that keeps the byte (page tables live in this memory too)
 *         add rbx, 4096
 *         loop touch
 *         mov dx, DONE
 *         out dx, eax
 *         jmp again
 * ```
 */
function toucherProgram(bytes: number): Uint8Array {
  return new Asm({ bits: 64, origin: 0x1000 })
    .label('again')
    .inc(dword(COUNTER))
    .mov('eax', dword(COUNTER))
    .mov('dx', PORT)
    .out('dx', 'eax')
    .cmp(dword(MAILBOX), 0)
    .je('again')
    .mov(dword(MAILBOX), 0)
    .xor('ebx', 'ebx')
    .mov('rcx', bytes / 4096)
    .label('touch')
    .or(byte(at('rbx')), 0)
    .add('rbx', 4096)
    .loop('touch')
    .mov('dx', DONE)
    .out('dx', 'eax')
    .jmp('again')
    .assemble();
}

async function exitOnce(vcpu: Vcpu, port = PORT): Promise<void> {
  const e = await vcpu.run();
  if (e.reason !== 'io' || e.port !== port) throw new Error(`unexpected exit ${e.reason} ${e.reason === 'io' ? e.port : ''}`);
}

/** One touch pass: the guest writes every page; resolves at its DONE exit. */
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
  const mem = vm.addMemory({ guestPhysAddr: 0n, size, memfd: 'bench-guest' });
  for (let off = 0; off < size; off += 1 << 30) mem.fill(BigInt(off), Math.min(1 << 30, size - off), 0); // host-touched
  const vcpu = vm.createVcpu(0);
  mem.write(0x1000n, toucherProgram(size));
  setupLongMode(vcpu, { entry: 0x1000, identityMapGiB: Math.ceil(size / 2 ** 30) });
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
      memory: [mem],
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
    for (let off = 0; off < size; off += CHUNK) await backend.sendFds(socket, mem.read(BigInt(off), Math.min(CHUNK, size - off)), []);
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
    mem = vm.addMemory({ guestPhysAddr: 0n, size });
    // Receive the memory straight into guest memory, chunk by chunk.
    let got = 0;
    const rest = Buffer.concat((reader as unknown as { chunks: Buffer[] }).chunks); // bytes that came with the header
    if (rest.length) {
      mem.write(0n, rest);
      got = rest.length;
    }
    while (got < size) {
      const r = await backend.recvFds(socket, Math.min(1 << 20, size - got), 0);
      if (r.data.length === 0) throw new Error('source closed early');
      mem.write(BigInt(got), r.data);
      got += r.data.length;
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

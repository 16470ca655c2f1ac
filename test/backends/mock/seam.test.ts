/**
 * The hybrid seam: the SEV half of the mock kernel driven without the mock's KVM, through
 * `host.sev.attach(port)` with a VM the caller owns (here a stand-in for a real KVM VM whose memory
 * is a mapping the mock did not create), and the PSP throttle.
 */
import test from 'ava';
import type { GuestMapping } from '../../../lib/backend/contract.js';
import { MockHost, type SevVcpuPort, type SevVmPort } from '../../../lib/backends/mock/index.js';
import { PlaintextMemory } from '../../../lib/backends/hybrid/common/plaintext-memory.js';
import { KVM_SEV } from '../../../lib/uapi/constants.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvm_enc_region, kvm_regs } from '../../../lib/uapi/kvm-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
} from '../../../lib/uapi/sev-structs.js';

/** A mapping that is not the mock's (what a native GuestMapping looks like to it). */
function foreignMapping(size: number): GuestMapping {
  const buf = new ArrayBuffer(size);
  let closed = false;
  return {
    size,
    get closed() {
      return closed;
    },
    buffer: buf,
    bindings: 0,
    view: (o: number, l?: number) => {
      if (o === 0 && (l ?? size) === size) return buf;
      throw new Error('whole views only');
    },
    unmap: () => {
      closed = true;
    },
  };
}

function port(host: MockHost, mapping: GuestMapping, vmType = 0) {
  let dead = false;
  let holds = 0;
  const vcpus: SevVcpuPort[] = [];
  const p: SevVmPort = {
    vmType,
    memslots: () => [{ gpa: 0x100000n, size: mapping.size, uaddr: host.memory.addressOf(mapping) }],
    vcpus: () => vcpus,
    createdVcpus: () => vcpus.length,
    markDead: () => {
      dead = true;
    },
    hold: () => {
      holds++;
    },
    release: () => {
      holds--;
    },
  };
  return { p, isDead: () => dead, holds: () => holds, vcpus };
}

test('a foreign VM attached to the SEV layer launches, measures and decrypts through the same ioctl surface', (t) => {
  const host = new MockHost({ memory: new PlaintextMemory(), trace: true });
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const mem = foreignMapping(0x4000);
  new Uint8Array(mem.buffer).set(new TextEncoder().encode('hybrid guest....'), 0x1000);
  const a = port(host, mem);
  const vm = host.sev.attach(a.p);
  t.teardown(() => vm.destroy());
  const op = (id: number, data: Parameters<typeof kvm_sev_cmd.arg>[0]['data'] = null) =>
    vm.ioctl(ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: sev.fd }));
  t.is(vm.ioctl(ioc.KVM_MEMORY_ENCRYPT_OP), 0, 'the probe');
  op(KVM_SEV.INIT);
  op(KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: 0 }));
  op(
    KVM_SEV.LAUNCH_UPDATE_DATA,
    kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0x1000, length: 0x1000 } }),
  );
  t.is(
    new TextDecoder().decode(new Uint8Array(mem.buffer, 0x1000, 16)),
    'hybrid guest....',
    'the plaintext controller leaves guest memory readable for a real CPU',
  );
  op(KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg({ uaddr: new Uint8Array(48) }));
  op(KVM_SEV.LAUNCH_FINISH);
  const out = new Uint8Array(16);
  op(KVM_SEV.DBG_DECRYPT, kvm_sev_dbg.arg({ src_uaddr: { kind: 'mapping', mapping: mem, offset: 0x1000, length: 16 }, dst_uaddr: out }));
  t.is(new TextDecoder().decode(out), 'hybrid guest....');
  t.is(host.trace.entries.find((e) => e.command === 'LAUNCH_UPDATE_DATA')!.fd, -1);
  t.like(
    t.throws(() => vm.ioctl(ioc.KVM_GET_REGS, kvm_regs.arg({}))),
    { code: 'ERR_INVALID_ARG_VALUE' },
  );
  t.like(
    t.throws(() => vm.ioctl(ioc.KVM_MEMORY_ENCRYPT_OP, { kind: 'struct', bytes: new Uint8Array(4), fixups: [] })),
    { code: 'ERR_OUT_OF_RANGE' },
  );
  vm.destroy();
  t.deepEqual(host.sev.snapshot().asidsReclaimable, [100]);
});

test('seam: MOVE marks the source dead and hands the context over; COPY holds the owner; demand pins on touch', async (t) => {
  const host = new MockHost({ pinning: 'demand', memlock: { limit: 2n * 4096n } });
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const mem = foreignMapping(0x4000);
  const a = port(host, mem);
  const b = port(host, mem);
  const c = port(host, mem);
  const src = host.sev.attach(a.p);
  t.teardown(() => src.destroy());
  const dst = host.sev.attach(b.p);
  t.teardown(() => dst.destroy());
  const mirror = host.sev.attach(c.p);
  t.teardown(() => mirror.destroy());
  src.ioctl(ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.INIT }));
  src.ioctl(
    ioc.KVM_MEMORY_ENCRYPT_OP,
    kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: kvm_sev_launch_start.arg({ policy: 0 }), sev_fd: sev.fd }),
  );
  const uaddr = host.memory.addressOf(mem);
  src.ioctl(
    ioc.KVM_MEMORY_ENCRYPT_REG_REGION,
    kvm_enc_region.arg({ addr: { kind: 'mapping', mapping: mem, offset: 0, length: 0x4000 }, size: 0x4000n }),
  );
  src.touch(uaddr, 0x2000);
  t.like(
    t.throws(() => src.touch(uaddr + 0x2000n, 0x1000)),
    { code: 'ENOMEM' },
  );
  t.like(
    t.throws(() => dst.moveEncContextFrom(null)),
    { code: 'EBADF' },
  );
  dst.moveEncContextFrom(src);
  t.true(src.dead);
  t.true(a.isDead());
  t.like(
    t.throws(() => src.ioctl(ioc.KVM_MEMORY_ENCRYPT_OP)),
    { code: 'EIO' },
  );
  t.like(
    host.sev.snapshot().vms.find((v) => v.active),
    { pagesLocked: 2, regions: 1 },
  );
  mirror.copyEncContextFrom(dst);
  t.is(b.holds(), 1, 'the mirror holds its owner');
  dst.destroy();
  t.true(
    host.sev.snapshot().vms.some((v) => v.active && !v.mirror),
    'the owner waits for its mirror',
  );
  mirror.destroy();
  t.is(b.holds(), 0);
  t.deepEqual(host.sev.snapshot().asidsHeld, []);
});

test('throttle: async PSP commands settle at the configured rate; one PSP timeline', async (t) => {
  const host = new MockHost({ throttle: { bytesPerSecond: 1 << 20 } }); // 1 MiB/s
  const kvm = host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const mem = host.mmapAnonymous(0x20000);
  t.teardown(() => mem.unmap());
  await host.ioctlAsync(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.INIT }));
  await host.ioctlAsync(
    vm,
    ioc.KVM_MEMORY_ENCRYPT_OP,
    kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: kvm_sev_launch_start.arg({ policy: 0 }), sev_fd: sev.fd }),
  );
  const t0 = performance.now();
  const upd = () =>
    host.ioctlAsync(
      vm,
      ioc.KVM_MEMORY_ENCRYPT_OP,
      kvm_sev_cmd.arg({
        id: KVM_SEV.LAUNCH_UPDATE_DATA,
        data: kvm_sev_launch_update_data.arg({ uaddr: { kind: 'mapping', mapping: mem, offset: 0, length: 0x10000 } }),
      }),
    );
  await Promise.all([upd(), upd()]); // 2 × 64 KiB at 1 MiB/s ≈ 125 ms, one after the other
  const ms = performance.now() - t0;
  t.true(ms >= 110, `took ${ms.toFixed(1)} ms`);
  t.true(ms < 2000, `took ${ms.toFixed(1)} ms`);
});

test('the system view answers from the options (kvm_amd parameters, memlock, /dev/sev), so the capability probe sees the mock', async (t) => {
  const host = new MockHost({ processor: 'naples', memlock: { limit: 1n << 20n } });
  t.is(host.system.kvmAmdParam('sev'), 'Y');
  t.is(host.system.kvmAmdParam('sev_es'), 'N', 'Naples has no SEV-ES');
  t.is(host.system.memlockLimit(), 1n << 20n);
  t.false(host.system.capIpcLock());
  t.false(new MockHost({ sev: { enabled: false } }).system.device('/dev/sev').exists);
  const { probeCapabilities } = await import('../../../lib/sev/capabilities.js');
  const r = await probeCapabilities(new MockHost());
  t.like(r, { backend: 'mock', kvm: true, sev: true, sevEs: true, snp: false });
});

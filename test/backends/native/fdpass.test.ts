/** SCM_RIGHTS: VM, vCPU and memfd fds handed over a Unix socket stay the same kernel objects. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();

hwTest(req, 'fds sent with SCM_RIGHTS arrive classified and usable; data arrives intact', async (t) => {
  const b = new NativeBackend();
  const kvm = b.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const memfd = b.memfdCreate('fdpass-test', 0x4000);
  t.teardown(() => memfd.close());
  const m1 = b.mmapShared(memfd, 0x4000);
  t.teardown(() => m1.unmap());
  new Uint8Array(m1.buffer).set([1, 2, 3, 4], 100);
  const [a, c] = b.socketPair();
  t.teardown(() => [a, c].forEach((s) => s.close()));
  const pending = b.recvFds(c, 64, 8);
  t.is(await b.sendFds(a, Buffer.from('hello fds'), [vm, memfd, kvm]), 9);
  const got = await pending;
  t.teardown(() => got.fds.forEach((f) => f.close()));
  t.is(Buffer.from(got.data).toString(), 'hello fds');
  t.deepEqual(
    got.fds.map((f) => f.kind),
    ['vm', 'memfd', 'kvm'],
  );
  t.not(got.fds[0]!.fd, vm.fd);
  // The received VM fd is the same VM: a vCPU created through it shows up as id 0 again -> EEXIST.
  b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0).close();
  const e = t.throws(() => b.ioctlFd(got.fds[0]!, ioc.KVM_CREATE_VCPU, 0));
  t.is((e as { code?: string }).code, 'EEXIST');
  // The received memfd maps the same memory.
  const m2 = b.mmapShared(got.fds[1]!, 0x4000);
  t.teardown(() => m2.unmap());
  t.deepEqual([...new Uint8Array(m2.buffer).subarray(100, 104)], [1, 2, 3, 4]);
  m1.unmap();
  m2.unmap();
  for (const f of [...got.fds, vm, memfd, kvm, a, c]) f.close();
});

hwTest(req, 'listen/connect/accept on a path, and a recv on a closed socket is cancelled', async (t) => {
  const b = new NativeBackend();
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'handoff.sock');
  const l = b.unixListen(path);
  t.teardown(() => l.close());
  const accepted = b.unixAccept(l);
  const client = b.unixConnect(path);
  t.teardown(() => client.close());
  const server = await accepted;
  t.teardown(() => server.close());
  t.is(server.kind, 'socket');
  const r = b.recvFds(server, 16);
  await b.sendFds(client, Uint8Array.of(7), []);
  t.deepEqual([...(await r).data], [7]);
  const hanging = b.recvFds(server, 16);
  server.close();
  const e = await t.throwsAsync(hanging);
  t.is((e as { code?: string }).code, 'ECANCELED');
  const bad = await t.throwsAsync(b.recvFds(client, 0));
  t.is((bad as { code?: string }).code, 'ERR_OUT_OF_RANGE');
  const empty = await t.throwsAsync(b.sendFds(client, new Uint8Array(0), []));
  t.is((empty as { code?: string }).code, 'ERR_OUT_OF_RANGE');
  // A send larger than the socket buffer does not block the event loop: the reads below run meanwhile.
  const [p1, p2] = b.socketPair();
  t.teardown(() => [p1, p2].forEach((s) => s.close()));
  const big = new Uint8Array(8 << 20).fill(7);
  const sending = b.sendFds(p1, big, []);
  let got = 0;
  while (got < big.length) got += (await b.recvFds(p2, 1 << 20, 0)).data.length;
  t.is(await sending, big.length);
  t.is(got, big.length);
  p1.close();
  p2.close();
  for (const f of [client, l]) f.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The shared mock SEV service trusts no client, and its clients trust no stranger (issue 10, cases
 * 6 to 11): only sealed memfds are mapped (a client that shrinks one cannot kill the service); a
 * client sees only its own VMs and tokens; the default socket lives in a private folder, and a
 * socket or listener of another user is refused; fds a request does not use are closed and a client
 * holds a bounded number; frames are bounded and so are connections; a VM dropped without close()
 * is released when collected.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, ftruncateSync, lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { HybridBackend } from '../../../lib/backends/hybrid/hybrid-backend.js';
import { defaultSevSocket } from '../../../lib/backends/hybrid/remote-sev.js';
import { NativeBackend } from '../../../lib/backends/native/native-backend.js';
import { GuestMemory } from '../../../lib/kvm/guest-memory.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { SevGuestCommands } from '../../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../../lib/sev/launch.js';
import { SevPlatform } from '../../../lib/sev/platform.js';
import { KVM_X86_DEFAULT_VM, KVM_X86_SEV_VM } from '../../../lib/uapi/constants.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();
const hw = req.ok ? test.serial : (title: string) => test.todo(`${title} — pending: ${req.reason}`);
const LM = { localMigration: { profile: 'local-migration-2021' as const } };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isRoot = process.getuid?.() === 0;

function sockPath(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-trust-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'sev.sock');
}

function client(t: ExecutionContext, socket: string, kernel: '7.2' | 'local-migration-2021') {
  const backend = new HybridBackend({ kernel, sevService: { socket } });
  t.teardown(() => backend.sevService!.close());
  const kvm = Kvm.open({ backend });
  t.teardown(() => kvm.close());
  return { backend, kvm };
}

async function launched(t: ExecutionContext, c: ReturnType<typeof client>, type: number) {
  const platform = SevPlatform.open(c.backend);
  t.teardown(() => platform.close());
  const vm = c.kvm.createVm(type);
  t.teardown(() => vm.close());
  const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, memfd: 'trust-test' });
  const g = await SevLaunch.init(vm, { platform });
  const launching = await g.launchStart({ policy: 0 });
  await launching.launchUpdateData(mem.range(0n, 0x1000));
  await (await launching.launchMeasure()).launchFinish();
  return { platform, vm, mem, cmds: new SevGuestCommands(vm, platform, type === KVM_X86_DEFAULT_VM ? LM : {}) };
}

hw('case 6: memfds are sealed against shrinking, an unsealed one is refused, and the service outlives the attempt', async (t) => {
  const socket = sockPath(t);
  const victim = client(t, socket, '7.2');
  await launched(t, victim, KVM_X86_SEV_VM);
  const attacker = client(t, socket, '7.2');
  const sealed = attacker.backend.memfdCreate('sealed', 0x10000);
  t.teardown(() => sealed.close());
  t.throws(() => ftruncateSync(sealed.fd, 0), { code: 'EPERM' });
  const vm = attacker.kvm.createVm(KVM_X86_SEV_VM);
  const memfd = attacker.backend.native.addon.memfdCreate('unsealed', 0x10000, 0);
  const mapping = attacker.backend.mmapShared(memfd, 0x10000);
  t.teardown(() => {
    vm.close(); // first: its slot pins the mapping
    mapping.unmap();
    memfd.close();
  });
  const mem = new GuestMemory(mapping, 0n, memfd);
  let refused: string | undefined;
  try {
    vm.setUserMemoryRegion({ slot: 0, guestPhysAddr: 0n, memory: mem });
  } catch (e) {
    refused = (e as { code?: string }).code;
  }
  if (!refused) {
    // The attack: shrink the file under the service's mapping, then make the service touch it.
    ftruncateSync(memfd.fd, 0);
    const platform = SevPlatform.open(attacker.backend);
    t.teardown(() => platform.close());
    try {
      const launching = await (await SevLaunch.init(vm, { platform })).launchStart({ policy: 0 });
      await launching.launchUpdateData(mem.range(0n, 0x1000));
    } catch {
      /* the service died under it */
    }
  }
  t.is(refused, 'ERR_KVM_SEV_UNSEALED_MEMFD');
  t.truthy(
    victim.backend.sevSnapshot.vms.find((v) => v.active),
    "the service is alive, and so is the victim's guest",
  );
});

hw("case 7: a client sees only its own VMs: not another client's SEV state, ASID or LOCAL_SEND token", async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, 'local-migration-2021');
  const b = client(t, socket, 'local-migration-2021');
  const src = await launched(t, a, KVM_X86_DEFAULT_VM);
  const token = await src.cmds.localSend();
  const mine = a.backend.sevServiceStatus();
  t.is(mine.vms.length, 1);
  t.true(
    mine.snapshot.vms.some((v) => v.token === token),
    'the sender sees its own token',
  );
  const theirs = b.backend.sevServiceStatus();
  t.deepEqual(theirs.vms, []);
  t.deepEqual(theirs.snapshot.vms, []);
  t.deepEqual(theirs.snapshot.asidsHeld, []);
  t.is(theirs.snapshot.tokens, 0);
  t.is(theirs.memfds, 0);
});

/** A stranger (uid nobody) listening on `path` that answers every request as a service would. */
function squatter(t: ExecutionContext, path: string): Promise<void> {
  const src = `
    const net = require('node:net');
    net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
          buf = buf.subarray(4 + buf.readUInt32LE(0));
          const body = Buffer.from(JSON.stringify({ ok: true, pid: process.pid, kernel: '7.2', processor: 'milan', vm: 1 }));
          const head = Buffer.alloc(4);
          head.writeUInt32LE(body.length);
          s.write(Buffer.concat([head, body]));
        }
      });
    }).listen(process.argv[1], () => console.log('listening'));`;
  const p = spawn(process.execPath, ['-e', src, path], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => void p.kill('SIGKILL'));
  return new Promise((resolve, reject) => {
    p.stdout.on('data', () => resolve());
    p.once('exit', (c) => reject(new Error(`the squatter exited with ${c}`)));
  });
}

hw(
  'case 8: the default socket is in a private folder; a socket or a listener of another user is refused before anything is sent',
  async (t) => {
    const d = dirname(defaultSevSocket('7.2', 'milan'));
    const st = lstatSync(d);
    t.true(st.isDirectory());
    t.is(st.uid, process.getuid?.() ?? 0);
    t.is(st.mode & 0o777, 0o700, `${d} is private`);
    if (!isRoot) return;
    // A folder anyone may write to, as /tmp is, where another user listened first.
    const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-squat-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    chmodSync(dir, 0o1777);
    const path = join(dir, 'sev.sock');
    await squatter(t, path);
    const e1 = t.throws(() => new HybridBackend({ kernel: '7.2', processor: 'milan', sevService: { socket: path, spawn: false } }));
    t.is((e1 as { code?: string }).code, 'ERR_KVM_SEV_UNTRUSTED_SERVICE', e1?.message);
    // The path made to look like ours: the listener's own credentials (SO_PEERCRED) still tell.
    chownSync(path, 0, 0);
    const e2 = t.throws(() => new HybridBackend({ kernel: '7.2', processor: 'milan', sevService: { socket: path, spawn: false } }));
    t.is((e2 as { code?: string }).code, 'ERR_KVM_SEV_UNTRUSTED_SERVICE', e2?.message);
  },
);

hw('case 8: the service hangs up on a client of another user', async (t) => {
  if (!isRoot) {
    t.pass('needs root to connect as another user');
    return;
  }
  const socket = sockPath(t);
  const a = client(t, socket, '7.2');
  t.is(a.backend.sevServiceStatus().clients, 1);
  chmodSync(dirname(socket), 0o755);
  chmodSync(socket, 0o777);
  const r = runChild(
    `const net = await import('node:net');
     const s = net.connect(process.env.SOCK);
     const body = Buffer.from(JSON.stringify({ op: 'hello', pid: 1 }));
     const head = Buffer.alloc(4);
     head.writeUInt32LE(body.length);
     s.on('connect', () => s.write(Buffer.concat([head, body])));
     let got = 0;
     s.on('data', (d) => (got += d.length));
     await new Promise((res) => { s.on('close', res); s.on('error', res); });
     out.replied = got;`,
    { uid: 65534, gid: 65534, env: { SOCK: socket }, timeoutMs: 20_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { replied: 0 });
  t.is(a.backend.sevServiceStatus().clients, 1);
});

hw('case 9: fds a request does not use are closed at once, and a client shares at most 64 memfds', async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, '7.2');
  const svc = a.backend.sevService!;
  const daemonFds = () => readdirSync(`/proc/${svc.daemonPid}/fd`).length;
  const before = daemonFds();
  const spare = a.backend.native.memfdCreate('unused', 4096);
  t.teardown(() => spare.close());
  for (let i = 0; i < 50; i++) svc.request({ op: 'hello', pid: process.pid }, [spare]);
  for (let i = 0; i < 20; i++) t.throws(() => svc.request({ op: 'no-such-op' }, [spare]));
  t.is(daemonFds(), before, 'no fd of a request that did not use it stays');
  const n = a.backend.native;
  const kvm = n.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const raw = n.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => raw.close());
  const vm = svc.attach(KVM_X86_DEFAULT_VM, raw, { vcpuList: [], markDead() {} });
  t.teardown(() => vm.destroy());
  const codes: string[] = [];
  for (let i = 0; i < 70; i++) {
    const m = n.memfdCreate(`share-${i}`, 4096);
    try {
      svc.request({ op: 'ioctl', vm: vm.id, request: ioc.KVM_MEMORY_ENCRYPT_OP, arg: null, memKeys: [1000 + i], guestDebug: [] }, [m]);
      codes.push('kept');
    } catch (e) {
      codes.push((e as { code?: string }).code ?? '?');
    } finally {
      m.close();
    }
  }
  t.is(codes.filter((c) => c === 'kept').length, 64);
  t.is(codes.filter((c) => c === 'ERR_KVM_SEV_TOO_MANY_FDS').length, 6);
  t.true(daemonFds() <= before + 1 + 64, `${daemonFds() - before} more fds in the service`);
});

hw('case 10: a frame larger than the protocol needs is refused from its header; at most 32 clients at once', async (t) => {
  const socket = sockPath(t);
  const a = client(t, socket, '7.2');
  const n = new NativeBackend();
  const raw = n.unixConnect(socket);
  t.teardown(() => raw.close());
  const head = Buffer.alloc(4);
  head.writeUInt32LE(64 << 20);
  let hungUp = await n.sendFds(raw, Buffer.concat([head, Buffer.alloc(1 << 20, 0x20)]), []).then(
    () => false,
    (e: { code?: string }) => e.code === 'EPIPE' || e.code === 'ECONNRESET', // it hung up while we sent
  );
  hungUp ||= await Promise.race([
    n.recvFds(raw, 16).then(
      (r) => r.data.length === 0,
      (e: { code?: string }) => e.code === 'ECONNRESET',
    ),
    sleep(3000).then(() => false),
  ]);
  t.true(hungUp, 'the service hung up on the oversized frame');
  const conns: ReturnType<NativeBackend['unixConnect']>[] = [];
  t.teardown(() => conns.forEach((c) => c.close()));
  while (conns.length < 40) {
    try {
      conns.push(n.unixConnect(socket));
    } catch {
      await sleep(10); // the listener's queue is full: it accepts meanwhile
    }
  }
  await sleep(300);
  t.true(a.backend.sevServiceStatus().clients <= 32, `${a.backend.sevServiceStatus().clients} clients`);
  const closed = await Promise.all(
    conns.map((c) =>
      Promise.race([
        n.recvFds(c, 16).then(
          (r) => r.data.length === 0,
          () => true,
        ),
        sleep(1000).then(() => false),
      ]),
    ),
  );
  t.true(closed.filter(Boolean).length >= 40 - 31, `${closed.filter(Boolean).length} of 40 were turned away`);
});

hw('case 11: a VM dropped without close() is released when collected: its fds here and at the service', (t) => {
  const socket = sockPath(t);
  const r = runChild(
    `const { HybridBackend } = await import(lib.replace('index.js', 'backends/hybrid/hybrid-backend.js'));
     const ioc = await import(lib.replace('index.js', 'uapi/ioctls.js'));
     const { KVM_X86_SEV_VM } = await import(lib.replace('index.js', 'uapi/constants.js'));
     const fs = await import('node:fs');
     const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
     const vmFds = () => fs.readdirSync('/proc/self/fd').filter((f) => {
       try { return fs.readlinkSync('/proc/self/fd/' + f) === 'anon_inode:kvm-vm'; } catch { return false; }
     }).length;
     const b = new HybridBackend({ kernel: '7.2', sevService: { socket: process.env.SOCK } });
     const kvm = b.open('/dev/kvm');
     const daemonFds = () => fs.readdirSync('/proc/' + b.sevService.daemonPid + '/fd').length;
     const fds0 = vmFds(), daemon0 = daemonFds();
     (() => {
       for (let i = 0; i < 5; i++) b.ioctlFd(b.ioctlFd(kvm, ioc.KVM_CREATE_VM, KVM_X86_SEV_VM), ioc.KVM_CREATE_VCPU, 0);
     })();
     out.held = b.sevServiceStatus().vms.length;
     for (let i = 0; i < 50 && (vmFds() > fds0 || b.sevServiceStatus().vms.length > 0); i++) { globalThis.gc(); await sleep(20); }
     out.fds = vmFds() - fds0;
     out.serviceVms = b.sevServiceStatus().vms.length;
     out.daemonFds = daemonFds() - daemon0;
     kvm.close();
     b.sevService.close();`,
    { flags: ['--expose-gc'], env: { SOCK: socket }, timeoutMs: 60_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { held: 5, fds: 0, serviceVms: 0, daemonFds: 0 });
});

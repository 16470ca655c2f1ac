/**
 * A bounded, seeded fuzz of every entry point of the native addon (issue 10): random sequences of
 * calls with wrong types, closed fds, detached and resizable buffers, structs with random bytes and
 * fix-ups, and getters that close an fd, unmap memory, start the guest, detach or shrink a buffer or
 * throw while the shim reads them. Each call must return or fail with a typed error (a `code`), and
 * once the world is closed every promise must settle (no hang). Under the ASan build (CI) any
 * memory error aborts the run.
 *
 * Reproducible: KVM_SEV_FUZZ_SEED (default below) and KVM_SEV_FUZZ_RUNS choose the runs; a failure
 * prints the seed and path fast-check needs to replay it.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BackendFd, GuestMapping, VcpuRunHandle } from '../../../lib/backend/contract.js';
import { loadAddon, type NativeAddon } from '../../../lib/backends/native/addon.js';
import * as ioc from '../../../lib/uapi/ioctls.js';
import { structs } from '../../../lib/uapi/index.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = kvmDevice();
const SEED = Number(process.env['KVM_SEV_FUZZ_SEED'] ?? 0x5eed10);
const RUNS = Number(process.env['KVM_SEV_FUZZ_RUNS'] ?? 120);

type Fn = (...args: unknown[]) => unknown;
type FdName = 'kvm' | 'vm' | 'vcpu' | 'memfd' | 'sockA' | 'sockB' | 'listener' | 'closed';
type Sabotage = 'close-vm' | 'close-vcpu' | 'close-memfd' | 'close-sock' | 'unmap' | 'run' | 'throw' | 'detach' | 'shrink';

/** An argument, described so that fast-check can print and replay it, made concrete against a world. */
type Arg =
  | { t: 'fd'; which: FdName }
  | { t: 'fdnum'; which: FdName }
  | { t: 'num'; v: number }
  | { t: 'big'; v: bigint }
  | { t: 'str'; v: string }
  | { t: 'undef' }
  | { t: 'null' }
  | { t: 'obj' }
  | { t: 'fds'; of: FdName[] }
  | { t: 'bytes'; n: number; how: 'plain' | 'detached' | 'resizable' }
  | { t: 'mapping'; anon: boolean }
  | { t: 'range'; off: number; len: number; sabotage: Sabotage | null }
  | { t: 'struct'; size: number; fill: number; fixups: { offset: number; target: Arg }[]; sabotage: Sabotage | null }
  | { t: 'request'; index: number; raw: number };

interface Call {
  entry: string;
  args: Arg[];
}

const FD_NAMES: FdName[] = ['kvm', 'vm', 'vcpu', 'memfd', 'sockA', 'sockB', 'listener', 'closed'];
const SABOTAGES: Sabotage[] = ['close-vm', 'close-vcpu', 'close-memfd', 'close-sock', 'unmap', 'run', 'throw', 'detach', 'shrink'];

const fdName = fc.constantFrom(...FD_NAMES);
const sabotage = fc.option(fc.constantFrom(...SABOTAGES), { freq: 3 });
const size = fc.oneof(
  fc.constantFrom(0, 1, 4, 8, 12, 16, 24, 32, 40, 48, 64, 104, 128, 144, 4096, 0x10000),
  fc.integer({ min: 0, max: 5000 }),
);
const leaf: fc.Arbitrary<Arg> = fc.oneof(
  fdName.map((which) => ({ t: 'fd' as const, which })),
  fdName.map((which) => ({ t: 'fdnum' as const, which })),
  fc
    .oneof(fc.constantFrom(-1, 0, 1, 4096, 0x10000, 2 ** 31, 2 ** 32, 2 ** 53, NaN, Infinity, 1.5), fc.integer())
    .map((v) => ({ t: 'num' as const, v })),
  fc.bigInt({ min: -1n, max: 2n ** 64n }).map((v) => ({ t: 'big' as const, v })),
  fc.constantFrom('', '/dev/kvm', '/dev/sev', '/etc/passwd', 'x'.repeat(200)).map((v) => ({ t: 'str' as const, v })),
  fc.constant({ t: 'undef' as const }),
  fc.constant({ t: 'null' as const }),
  fc.constant({ t: 'obj' as const }),
  fc.array(fdName, { maxLength: 4 }).map((of) => ({ t: 'fds' as const, of })),
  fc.record({ n: size, how: fc.constantFrom('plain' as const, 'detached' as const, 'resizable' as const) }).map((r) => ({
    t: 'bytes' as const,
    ...r,
  })),
  fc.boolean().map((anon) => ({ t: 'mapping' as const, anon })),
  fc.record({ off: size, len: size, sabotage }).map((r) => ({ t: 'range' as const, ...r })),
);
const arg: fc.Arbitrary<Arg> = fc.oneof(
  { weight: 3, arbitrary: leaf },
  {
    weight: 2,
    arbitrary: fc
      .record({
        size,
        fill: fc.integer({ min: 0, max: 255 }),
        fixups: fc.array(fc.record({ offset: fc.constantFrom(0, 4, 8, 16, 24, 32, 40, 56, 3), target: leaf }), { maxLength: 3 }),
        sabotage,
      })
      .map((r) => ({ t: 'struct' as const, ...r })),
  },
);
const request = fc.record({ index: fc.nat(), raw: fc.integer({ min: 0, max: 0xffffffff }) }).map((r) => ({ t: 'request' as const, ...r }));

/** Mostly a well-formed argument (so calls get past the type checks), sometimes anything. */
const mostly = (good: fc.Arbitrary<Arg>): fc.Arbitrary<Arg> => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: leaf });
const num = (...v: number[]) => fc.constantFrom(...v).map((x): Arg => ({ t: 'num', v: x }));
const fdOf = (...w: FdName[]) => fc.constantFrom(...w).map((which): Arg => ({ t: 'fd', which }));
const fdnumOf = (...w: FdName[]) => fc.constantFrom(...w).map((which): Arg => ({ t: 'fdnum', which }));
const sock = fdOf('sockA', 'sockB');
const smallBytes = fc
  .record({
    n: fc.integer({ min: 0, max: 64 }),
    how: fc.constantFrom('plain' as const, 'plain' as const, 'detached' as const, 'resizable' as const),
  })
  .map((r): Arg => ({ t: 'bytes', ...r }));
const exactStruct = fc
  .record({
    size: fc.oneof({ weight: 3, arbitrary: fc.constant(0x10000) }, { weight: 1, arbitrary: size }),
    fill: fc.constantFrom(0, 0, 0, 1, 0xff),
    fixups: fc.array(fc.record({ offset: fc.constantFrom(0, 8, 16, 24, 32, 40), target: leaf }), { maxLength: 2 }),
    sabotage,
  })
  .map((r): Arg => ({ t: 'struct', ...r }));

/** Each entry point and the arbitraries of its arguments. */
const ENTRIES: Record<string, fc.Arbitrary<Arg>[]> = {
  ioctl: [mostly(fdnumOf(...FD_NAMES)), request, fc.oneof(exactStruct, arg)],
  ioctlAsync: [mostly(fdnumOf(...FD_NAMES)), request, fc.oneof(exactStruct, arg)],
  ioctlFd: [mostly(fdnumOf('kvm', 'vm', 'vcpu')), request, mostly(num(0, 1, 2, 3))],
  mmapAnonymous: [mostly(num(4096, 0x2000, 0x10000))],
  memfdCreate: [
    mostly(fc.constant({ t: 'str', v: 'fuzz-m' })),
    mostly(num(4096, 0x10000)),
    fc.oneof(fc.constant({ t: 'undef' }), num(0, 2, 6, 1, 8)),
  ],
  memfdSeals: [mostly(fdOf('memfd', 'closed'))],
  mmapShared: [mostly(fdOf('memfd', 'closed')), mostly(num(4096, 0x10000, 0x20000)), mostly(num(0, 4096, 0x10000))],
  VcpuRunner: [mostly(fdOf('vcpu', 'vm')), mostly(num(4096, 12288, 16384, 1 << 24))],
  run: [],
  kick: [],
  runnerClose: [],
  socketPair: [],
  unixListen: [mostly(fc.constant({ t: 'str', v: 'x' }))],
  unixConnect: [mostly(fc.constant({ t: 'str', v: 'x' }))],
  unixAccept: [mostly(fdOf('listener', 'sockA', 'closed'))],
  sendFds: [mostly(sock), mostly(smallBytes), mostly(fc.array(fdName, { maxLength: 3 }).map((of): Arg => ({ t: 'fds', of })))],
  recvFds: [mostly(sock), mostly(num(1, 16, 4096)), mostly(num(0, 1, 2, 4))],
  sendFdsSync: [mostly(sock), mostly(smallBytes), mostly(fc.array(fdName, { maxLength: 3 }).map((of): Arg => ({ t: 'fds', of })))],
  recvSync: [mostly(sock), mostly(num(1, 16, 4096)), mostly(num(0, 1, 4))],
  sameFile: [mostly(fdOf(...FD_NAMES)), mostly(fdOf(...FD_NAMES))],
  peerCredentials: [mostly(fdOf('sockA', 'listener', 'vm'))],
  setSevCommandIds: [mostly(fdnumOf('vm', 'vcpu', 'closed')), mostly(num(0, 22, 23, 100)), mostly(num(0, 22, 23, 101))],
  sevCommandIds: [mostly(fdnumOf('vm', 'kvm', 'closed'))],
  describeSevCommands: [mostly(num(0, 22)), mostly(num(0, 23))],
  open: [mostly(fc.constantFrom('/dev/kvm', '/dev/sev').map((v): Arg => ({ t: 'str', v }))), leaf],
  view: [fc.constant({ t: 'mapping', anon: false }), mostly(num(0, 4096, 0x10000)), mostly(num(0, 4096, 0x10000))],
  unmap: [leaf],
  buffer: [leaf],
  close: [mostly(fdOf(...FD_NAMES))],
};
const call: fc.Arbitrary<Call> = fc.oneof(
  ...Object.entries(ENTRIES).map(([entry, args]) => fc.tuple(...args).map((a): Call => ({ entry, args: a }))),
);

/** The kernel objects one run plays with; closing it releases everything, whatever the calls did. */
class World {
  readonly a: NativeAddon = loadAddon();
  readonly dir = mkdtempSync(join(tmpdir(), 'kvm-sev-fuzz-'));
  readonly fds = new Map<FdName, BackendFd>();
  readonly opened: { close?: () => void }[] = [];
  readonly mappings: GuestMapping[] = [];
  readonly pending: Promise<unknown>[] = [];
  readonly kvm: BackendFd;
  readonly vm: BackendFd;
  readonly vcpu: BackendFd;
  readonly memfd: BackendFd;
  readonly pair: [BackendFd, BackendFd];
  readonly listener: BackendFd;
  readonly closedFd: BackendFd;
  readonly mem: GuestMapping;
  readonly anon: GuestMapping;
  runner: VcpuRunHandle | undefined;
  /** Promises still pending 5 s after everything was closed (a hang), filled in by disposal. */
  hung: string[] = [];
  private paths = 0;

  constructor() {
    const a = this.a;
    this.kvm = a.open('/dev/kvm', true);
    this.vm = a.ioctlFd(this.kvm.fd, ioc.KVM_CREATE_VM, 0);
    this.vcpu = a.ioctlFd(this.vm.fd, ioc.KVM_CREATE_VCPU, 0);
    this.memfd = a.memfdCreate('fuzz', 0x10000);
    this.mem = a.mmapShared(this.memfd, 0x10000, 0);
    this.anon = a.mmapAnonymous(0x10000);
    this.pair = a.socketPair();
    this.listener = a.unixListen(join(this.dir, 'l.sock'));
    this.closedFd = a.memfdCreate('fuzz-closed', 4096);
    this.closedFd.close();
    const named: [FdName, BackendFd][] = [
      ['kvm', this.kvm],
      ['vm', this.vm],
      ['vcpu', this.vcpu],
      ['memfd', this.memfd],
      ['sockA', this.pair[0]],
      ['sockB', this.pair[1]],
      ['listener', this.listener],
      ['closed', this.closedFd],
    ];
    for (const [k, f] of named) this.fds.set(k, f);
    a.ioctl(
      this.vm.fd,
      ioc.KVM_SET_USER_MEMORY_REGION,
      structs.kvm_userspace_memory_region.arg({
        slot: 0,
        memory_size: 0x10000n,
        userspace_addr: { kind: 'mapping', mapping: this.anon, offset: 0, length: 0x10000 },
      }),
    );
  }

  track<T>(v: T): T {
    if (v && typeof v === 'object') {
      const o = v as { close?: () => void; unmap?: () => void; fds?: BackendFd[] };
      if (Array.isArray(v)) for (const x of v as unknown[]) this.track(x);
      else if (o.fds) for (const x of o.fds) this.track(x);
      else if (typeof o.close === 'function') this.opened.push(o);
      else if (typeof o.unmap === 'function') this.mappings.push(o as GuestMapping);
    }
    return v;
  }

  later(p: unknown): void {
    if (p instanceof Promise) this.pending.push((p as Promise<unknown>).then((v) => this.track(v)));
  }

  sabotage(s: Sabotage | null, buf?: Uint8Array): void {
    if (!s) return;
    switch (s) {
      case 'close-vm':
      case 'close-vcpu':
      case 'close-memfd':
        this.fds.get(s.slice(6) as FdName)!.close();
        return;
      case 'close-sock':
        this.fds.get('sockB')!.close();
        return;
      case 'unmap':
        for (const m of [this.mem, this.anon]) {
          try {
            m.unmap();
          } catch {
            /* EBUSY: a slot or a call holds it */
          }
        }
        return;
      case 'run':
        if (this.runner && !this.runner.closed) this.later(this.runner.run());
        return;
      case 'throw':
        throw new Error('sabotage');
      case 'detach':
        if (buf && buf.buffer.byteLength > 0) structuredClone(buf.buffer, { transfer: [buf.buffer as ArrayBuffer] });
        return;
      case 'shrink':
        if (buf && (buf.buffer as ArrayBuffer & { resizable?: boolean }).resizable)
          (buf.buffer as ArrayBuffer & { resize(n: number): void }).resize(0);
        return;
    }
  }

  value(x: Arg, req?: number): unknown {
    switch (x.t) {
      case 'fd':
        return this.fds.get(x.which);
      case 'fdnum':
        return this.fds.get(x.which)!.fd;
      case 'num':
      case 'big':
      case 'str':
        return x.t === 'str' && x.v.startsWith('x') ? join(this.dir, `p${this.paths++}.sock`) : x.v;
      case 'undef':
        return undefined;
      case 'null':
        return null;
      case 'obj':
        return {};
      case 'fds':
        return x.of.map((w) => this.fds.get(w));
      case 'bytes': {
        const n = Math.min(x.n, 0x10000);
        if (x.how === 'resizable')
          return new Uint8Array(new (ArrayBuffer as new (n: number, o: object) => ArrayBuffer)(n, { maxByteLength: n + 16 }));
        const b = new Uint8Array(n);
        if (x.how === 'detached' && n > 0) structuredClone(b.buffer, { transfer: [b.buffer] });
        return b;
      }
      case 'mapping':
        return x.anon ? this.anon : this.mem;
      case 'range': {
        const mapping = this.mem;
        const sab = x.sabotage;
        return {
          kind: 'mapping',
          get mapping() {
            world().sabotage(sab);
            return mapping;
          },
          offset: x.off,
          length: x.len,
        };
      }
      case 'struct': {
        // The struct the request takes, if the size says so; random bytes otherwise.
        const layout = req !== undefined ? this.layoutOf(req) : undefined;
        const n = Math.min(x.size === 0x10000 && layout ? layout : x.size, 0x10000);
        const bytes = new Uint8Array(n).fill(x.fill);
        for (const f of x.fixups) if (f.offset + 8 <= n) bytes.fill(0, f.offset, f.offset + 8);
        const fixups = x.fixups.map((f) => ({ offset: f.offset, target: this.value(f.target) }));
        const sab = x.sabotage;
        return {
          kind: 'struct',
          get bytes() {
            world().sabotage(sab, bytes);
            return bytes;
          },
          fixups,
        };
      }
      case 'request': {
        const all = this.a.describe().requests;
        return x.raw % 4 === 0 ? x.raw : all[x.index % all.length]!.request;
      }
    }
  }

  private layoutOf(request: number): number | undefined {
    const d = this.a.describe();
    const r = d.requests.find((q) => q.request === request);
    return d.layouts.find((l) => l.name === r?.struct)?.size;
  }

  invoke(c: Call): unknown {
    const a = this.a as unknown as Record<string, Fn>;
    const req = c.args[1]?.t === 'request' ? (this.value(c.args[1]) as number) : undefined;
    const v = c.args.map((x, i) => (i === 1 && req !== undefined ? req : this.value(x, req)));
    // A socket path the fuzz made up must land in its own folder: run as root, a listen on a path
    // such as /dev/sev would leave a socket there that other tests then take for the device.
    if ((c.entry === 'unixListen' || c.entry === 'unixConnect') && typeof v[0] === 'string' && v[0] !== '' && !v[0].startsWith(this.dir))
      v[0] = join(this.dir, `q${this.paths++}-${v[0].length}.sock`);
    switch (c.entry) {
      case 'VcpuRunner': {
        const R = this.a.VcpuRunner as unknown as new (...x: unknown[]) => VcpuRunHandle;
        const r = new R(...v);
        this.track(r);
        this.runner ??= r;
        return r;
      }
      case 'run':
        return this.runner && !this.runner.closed ? this.runner.run() : undefined;
      case 'kick':
        return this.runner?.kick();
      case 'runnerClose':
        return this.runner?.close();
      case 'recvSync': // never a wait without a bound on this thread
        return a['recvSync']!(v[0], v[1], v[2], 5);
      case 'sendFdsSync': // a small send cannot fill the peer's buffer
        return a['sendFdsSync']!(v[0], v[1] instanceof Uint8Array && v[1].byteLength > 512 ? v[1].subarray(0, 512) : v[1], v[2]);
      case 'view':
        return (v[0] as { view?: Fn })?.view?.call(this.mem, v[1], v[2]);
      case 'unmap':
        return (this.value({ t: 'mapping', anon: c.args[0]?.t === 'null' }) as GuestMapping).unmap();
      case 'buffer':
        return (this.value({ t: 'mapping', anon: c.args[0]?.t === 'null' }) as GuestMapping).buffer;
      case 'close':
        return (v[0] as { close?: Fn } | undefined)?.close?.call(v[0]);
      default:
        return a[c.entry]!(...v);
    }
  }

  /** Closes everything, then waits (bounded) for every promise: one that never settles is a hang. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.runner?.close();
    for (const o of this.opened.splice(0)) {
      try {
        o.close?.();
      } catch {
        /* closed already */
      }
    }
    for (const f of [this.vcpu, this.vm, this.kvm, this.memfd, ...this.pair, this.listener, this.closedFd]) f.close();
    const hung = this.hung;
    await Promise.all(
      this.pending.map((p, i) =>
        Promise.race([
          p.then(
            () => undefined,
            () => undefined,
          ),
          new Promise((r) => setTimeout(r, 5000)).then(() => hung.push(`promise ${i}`)),
        ]),
      ),
    );
    for (const o of this.opened.splice(0)) o.close?.(); // what settled meanwhile
    for (const m of [this.mem, this.anon, ...this.mappings]) {
      // A thread that held a VM's fd (a send in flight) lets go just after its promise settled.
      for (let i = 0; ; i++) {
        try {
          m.unmap();
          break;
        } catch (e) {
          if ((e as { code?: string }).code !== 'EBUSY' || i === 100) throw e;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let current: World | undefined;
const world = (): World => current!;

/** How the calls ended, by outcome (logged: a fuzz that only ever fails early tests little). */
const outcomes = new Map<string, number>();
const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);

/** A failure the fuzz counts: anything thrown that is not a typed error (or the sabotage's own). */
function untyped(e: unknown): string | undefined {
  const code = (e as { code?: unknown }).code;
  count(typeof code === 'string' ? code : (e as Error).message === 'sabotage' ? 'sabotage' : 'untyped');
  if (e instanceof Error && (typeof code === 'string' || e.message === 'sabotage')) return undefined;
  return `untyped: ${String(e)}`;
}

hwTest(
  req,
  `fuzz: ${RUNS} seeded runs over every addon entry point end in typed errors, no crash and no hang (seed ${SEED})`,
  async (t) => {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { minLength: 1, maxLength: 10 }), async (calls) => {
        const bad: string[] = [];
        const w = new World();
        try {
          current = w;
          for (const c of calls) {
            try {
              const r = w.track(w.invoke(c));
              if (!(r instanceof Promise)) count('returned');
              if (r instanceof Promise)
                w.pending.push(
                  (r as Promise<unknown>).then(
                    (v) => {
                      count('resolved');
                      return w.track(v);
                    },
                    (e) => {
                      const u = untyped(e);
                      if (u) bad.push(`${c.entry}: ${u}`);
                    },
                  ),
                );
            } catch (e) {
              const u = untyped(e);
              if (u) bad.push(`${c.entry}: ${u}`);
            }
          }
        } finally {
          await w[Symbol.asyncDispose]();
          bad.push(...w.hung.map((h) => `hang: ${h}`));
          current = undefined;
        }
        if (bad.length > 0) throw new Error(bad.join('; '));
      }),
      { seed: SEED, numRuns: RUNS, includeErrorInReport: true },
    );
    t.log(
      [...outcomes]
        .sort((x, y) => y[1] - x[1])
        .map(([k, n]) => `${k} ${n}`)
        .join(', '),
    );
    t.true((outcomes.get('returned') ?? 0) + (outcomes.get('resolved') ?? 0) > RUNS, 'calls got past the argument checks');
  },
);

hwTest(req, 'fuzz: workers running the addon and terminated at seeded random moments leave no fd behind and no crash', (t) => {
  const r = runChild(
    `const { Worker } = await import('node:worker_threads');
     const fs = await import('node:fs');
     const kvmFdNames = () => fs.readdirSync('/proc/self/fd').flatMap((f) => {
       try { const l = fs.readlinkSync('/proc/self/fd/' + f); return ['/dev/kvm', 'anon_inode:kvm', '/memfd:'].some((p) => l.startsWith(p)) ? [l] : []; } catch { return []; }
     });
     const kvmFds = () => kvmFdNames().length;
     let seed = ${SEED};
     const rnd = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648), seed % n);
     const fds0 = kvmFds();
     for (let i = 0; i < 12; i++) {
       const w = new Worker(\`
         const { NativeBackend } = await import(\${JSON.stringify(native)});
         const ioc = await import(\${JSON.stringify(lib.replace('index.js', 'uapi/ioctls.js'))});
         const b = new NativeBackend();
         for (let k = 0; ; k++) {
           const kvm = b.open('/dev/kvm');
           const vm = b.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
           const vcpu = b.ioctlFd(vm, ioc.KVM_CREATE_VCPU, 0);
           const m = b.memfdCreate('w', 0x10000);
           const map = b.mmapShared(m, 0x10000);
           const [s1, s2] = b.socketPair();
           b.recvFds(s2, 16, 4).then((r) => r.fds.forEach((f) => f.close()), () => {});
           b.sendFds(s1, Uint8Array.of(1), [vm, m]).catch(() => {});
           b.ioctlAsync(vcpu.fd, ioc.KVM_GET_REGS, undefined).catch(() => {});
           const r = b.createRunner(vcpu, b.ioctl(kvm, ioc.KVM_GET_VCPU_MMAP_SIZE));
           r.run().catch(() => {});
           await new Promise((res) => setTimeout(res, k % 3));
           if (k % 4 === 0) continue; // leave some open for the env's cleanup
           r.close(); s1.close(); s2.close(); map.unmap(); m.close(); vcpu.close(); vm.close(); kvm.close();
         }\`, { eval: true });
       w.on('error', () => {});
       await new Promise((res) => setTimeout(res, 20 + rnd(80)));
       await w.terminate();
     }
     // A terminated worker's env closes what it held as it goes: wait (bounded) for the count to settle.
     for (let i = 0; i < 40 && kvmFds() > fds0; i++) await new Promise((res) => setTimeout(res, 50));
     out.leaked = kvmFds() - fds0;
     if (out.leaked) console.error('kvm fds left: ' + kvmFdNames().join(', '));`,
    { timeoutMs: 120_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { leaked: 0 }, describeChild(r));
});

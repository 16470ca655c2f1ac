/**
 * Property tests (fast-check): long random sequences of KVM/SEV commands across several VMs of one
 * mock host, checking after every step that no ASID is held twice, pinned-page counts never go
 * negative, handles are unique, the local-migration token rules hold, and only typed errors occur
 * (KvmError with a negative errno); at the end, closing everything returns every ASID and pin.
 */
import test from 'ava';
import fc from 'fast-check';
import type { BackendFd, GuestMapping } from '../../../../lib/backend/contract.js';
import { KvmError } from '../../../../lib/backend/errors.js';
import { MockHost, type KernelProfile } from '../../../../lib/backends/mock/index.js';
import { KVM_SEV, SEV_POLICY } from '../../../../lib/uapi/constants.js';
import { ioctlStruct, type IoctlStruct } from '../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../lib/uapi/ioctls.js';
import { kvm_enable_cap, kvm_enc_region } from '../../../../lib/uapi/kvm-structs.js';
import { kvm_sev_local_receive, kvm_sev_local_send } from '../../../../lib/uapi/local-migration-structs.js';
import {
  kvm_sev_cmd,
  kvm_sev_dbg,
  kvm_sev_guest_status,
  kvm_sev_init,
  kvm_sev_launch_measure,
  kvm_sev_launch_start,
  kvm_sev_launch_update_data,
} from '../../../../lib/uapi/sev-structs.js';

const PROCESSOR = {
  name: 'milan' as const,
  apiMajor: 1,
  apiMinor: 51,
  build: 3,
  maxSevAsid: 6,
  minSevAsid: 3,
  cbitPosition: 51,
  sevEs: true,
};
const VMS = 5;
const MEM = 0x8000;

type Op =
  | { t: 'create'; slot: number; type: number }
  | {
      t: 'init' | 'start' | 'update' | 'measure' | 'finish' | 'status' | 'dbg' | 'vcpu' | 'vmsa' | 'close' | 'send';
      slot: number;
      a: number;
      b: number;
    }
  | { t: 'reg' | 'unreg'; slot: number; a: number; b: number }
  | { t: 'move' | 'copy'; slot: number; src: number }
  | { t: 'recv'; slot: number; token: number };

const slot = fc.integer({ min: 0, max: VMS - 1 });
const small = fc.integer({ min: 0, max: 7 });
function ops(kernel: KernelProfile): fc.Arbitrary<Op[]> {
  const simple = fc.constantFrom(
    'init',
    'start',
    'update',
    'measure',
    'finish',
    'status',
    'dbg',
    'vcpu',
    'vmsa',
    'close',
    'reg',
    'unreg',
  ) as fc.Arbitrary<'init'>;
  const arbs: fc.Arbitrary<Op>[] = [
    fc.record({
      t: fc.constant('create' as const),
      slot,
      type: kernel === 'local-migration-2021' ? fc.constant(0) : fc.constantFrom(0, 2, 3),
    }),
    fc.record({ t: simple, slot, a: small, b: small }),
  ];
  if (kernel === 'local-migration-2021') {
    arbs.push(fc.record({ t: fc.constant('send' as const), slot, a: small, b: small }));
    arbs.push(fc.record({ t: fc.constant('recv' as const), slot, token: fc.integer({ min: -1, max: 6 }) }));
  } else {
    arbs.push(fc.record({ t: fc.constantFrom('move' as const, 'copy' as const), slot, src: slot }));
  }
  return fc.array(fc.oneof(...arbs), { minLength: 10, maxLength: 80 });
}

class Run {
  readonly host: MockHost;
  readonly kvm: BackendFd;
  readonly sev: BackendFd;
  readonly mem: GuestMapping;
  readonly vms: (BackendFd | undefined)[] = new Array<BackendFd | undefined>(VMS).fill(undefined);
  readonly types: number[] = new Array<number>(VMS).fill(0);
  readonly tokens: bigint[] = [];
  readonly used = new Set<bigint>();
  readonly vcpus: BackendFd[] = [];

  constructor(kernel: KernelProfile) {
    this.host = new MockHost({
      kernel,
      processor: PROCESSOR,
      memlock: { limit: 6n * 4096n },
      pinning: kernel === '6.12' ? 'demand' : 'upfront',
    });
    this.kvm = this.host.open('/dev/kvm');
    this.sev = this.host.open('/dev/sev');
    this.mem = this.host.mmapAnonymous(MEM);
  }

  private op(vm: BackendFd, id: number, data: IoctlStruct | null = null): void {
    this.host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id, data, sev_fd: this.sev.fd }));
  }

  private local(vm: BackendFd, id: number, data: IoctlStruct): void {
    this.host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, ioctlStruct(kvm_sev_cmd.encode({ id }), [{ offset: 8, target: data }]));
  }

  private range(a: number, b: number) {
    const offset = a * 0x1000 + b * 8;
    return { kind: 'mapping' as const, mapping: this.mem, offset, length: Math.min(0x800 + b * 0x100, MEM - offset) };
  }

  exec(o: Op): void {
    const vm = this.vms[o.slot];
    if (o.t === 'create') {
      this.vms[o.slot]?.close();
      this.vms[o.slot] = this.host.ioctlFd(this.kvm, ioc.KVM_CREATE_VM, o.type);
      this.types[o.slot] = o.type;
      return;
    }
    if (!vm) return;
    const typed = this.types[o.slot]! !== 0;
    switch (o.t) {
      case 'init':
        return typed ? this.op(vm, KVM_SEV.INIT2, kvm_sev_init.arg({})) : this.op(vm, o.a & 1 ? KVM_SEV.ES_INIT : KVM_SEV.INIT);
      case 'start':
        return this.op(vm, KVM_SEV.LAUNCH_START, kvm_sev_launch_start.arg({ policy: [0, SEV_POLICY.NODBG, SEV_POLICY.ES][o.a % 3]! }));
      case 'update':
        return this.op(vm, KVM_SEV.LAUNCH_UPDATE_DATA, kvm_sev_launch_update_data.arg({ uaddr: this.range(o.a, 0) }));
      case 'measure':
        return this.op(vm, KVM_SEV.LAUNCH_MEASURE, kvm_sev_launch_measure.arg(o.a & 1 ? {} : { uaddr: new Uint8Array(48) }));
      case 'finish':
        return this.op(vm, KVM_SEV.LAUNCH_FINISH);
      case 'status':
        return this.op(vm, KVM_SEV.GUEST_STATUS, kvm_sev_guest_status.arg({}));
      case 'dbg': {
        const r = this.range(o.a, o.b);
        return this.op(
          vm,
          o.b & 1 ? KVM_SEV.DBG_ENCRYPT : KVM_SEV.DBG_DECRYPT,
          o.b & 1
            ? kvm_sev_dbg.arg({ src_uaddr: new Uint8Array(r.length), dst_uaddr: r })
            : kvm_sev_dbg.arg({ src_uaddr: r, dst_uaddr: new Uint8Array(r.length) }),
        );
      }
      case 'vcpu':
        this.vcpus.push(this.host.ioctlFd(vm, ioc.KVM_CREATE_VCPU, o.a + 8 * o.b));
        return;
      case 'vmsa':
        return this.op(vm, KVM_SEV.LAUNCH_UPDATE_VMSA);
      case 'close':
        vm.close();
        this.vms[o.slot] = undefined;
        return;
      case 'reg':
      case 'unreg': {
        const r = this.range(o.a, o.b);
        this.host.ioctl(
          vm,
          o.t === 'reg' ? ioc.KVM_MEMORY_ENCRYPT_REG_REGION : ioc.KVM_MEMORY_ENCRYPT_UNREG_REGION,
          kvm_enc_region.arg({ addr: r, size: BigInt(r.length) }),
        );
        return;
      }
      case 'move':
      case 'copy': {
        const src = this.vms[o.src];
        const fd = src ? BigInt(src.fd) : 999n;
        this.host.ioctl(vm, ioc.KVM_ENABLE_CAP, kvm_enable_cap.arg({ cap: o.t === 'move' ? 206 : 197, args: [fd, 0n, 0n, 0n] }));
        return;
      }
      case 'send': {
        const d = kvm_sev_local_send.arg({});
        this.local(vm, 22, d);
        const tok = kvm_sev_local_send.decode(d.bytes).info_token;
        if (tok === 0n || this.tokens.includes(tok)) throw new Error(`bad token ${tok}`);
        this.tokens.push(tok);
        return;
      }
      case 'recv': {
        const token = o.token < 0 || o.token >= this.tokens.length ? 0x1234n : this.tokens[o.token]!;
        const d = kvm_sev_local_receive.arg({ info_token: token });
        try {
          this.local(vm, 23, d);
        } catch (e) {
          if (
            this.used.has(token) &&
            (e as KvmError).code !== 'EFAULT' &&
            (e as KvmError).code !== 'EPERM' &&
            (e as KvmError).code !== 'ENOTTY'
          ) {
            throw new Error(`a used token answered ${(e as KvmError).code}`);
          }
          throw e;
        }
        if (this.used.has(token)) throw new Error('a token was received twice');
        this.used.add(token);
        return;
      }
    }
  }

  check(): void {
    const s = this.host.sev.snapshot();
    if (new Set(s.asidsHeld).size !== s.asidsHeld.length) throw new Error('ASID listed twice');
    if (s.asidsHeld.some((a) => s.asidsReclaimable.includes(a))) throw new Error('an ASID both held and reclaimable');
    const owners = s.vms.filter((v) => v.active && !v.mirror && v.token === 0n);
    const asids = owners.map((v) => v.asid);
    if (new Set(asids).size !== asids.length) throw new Error(`an ASID held by two VMs: ${asids.join(',')}`);
    if (asids.some((a) => !s.asidsHeld.includes(a))) throw new Error('an active VM holds an ASID the allocator thinks free');
    const handles = owners.map((v) => v.handle).filter((h) => h !== 0);
    if (new Set(handles).size !== handles.length) throw new Error(`a handle used twice: ${handles.join(',')}`);
    for (const v of s.vms) if (v.pagesLocked < 0) throw new Error(`pages_locked ${v.pagesLocked}`);
    for (const v of s.vms.filter((x) => x.mirror && x.active)) {
      if (!s.vms.some((o) => !o.mirror && o.active && o.asid === v.asid)) throw new Error('a mirror without its owner');
    }
    if (s.tokens > this.tokens.length) throw new Error('more tokens than sends');
  }

  /** Closes what is still open, also when a step threw (fast-check then shrinks with many more runs). */
  [Symbol.dispose](): void {
    for (const v of this.vcpus) v.close();
    for (const v of this.vms) v?.close();
    this.sev.close();
    this.kvm.close();
    this.mem.unmap();
  }

  closeAll(): void {
    for (const v of this.vcpus) v.close();
    for (const v of this.vms) v?.close();
    const s = this.host.sev.snapshot();
    if (s.vms.length !== 0 || s.asidsHeld.length !== 0 || s.tokens !== 0)
      throw new Error(`left behind: ${JSON.stringify({ vms: s.vms.length, held: s.asidsHeld, tokens: s.tokens })}`);
  }
}

/** Runs the property; returns how often each command succeeded (so a test sees the states were reached). */
function property(kernel: KernelProfile, runs: number): Map<string, number> {
  const ok = new Map<string, number>();
  fc.assert(
    fc.property(ops(kernel), (list) => {
      using r = new Run(kernel);
      for (const o of list) {
        try {
          r.exec(o);
          ok.set(o.t, (ok.get(o.t) ?? 0) + 1);
        } catch (e) {
          if (!(e instanceof KvmError) || !(e.errno < 0) || e.syscall !== 'ioctl') throw e;
        }
        r.check();
      }
      r.closeAll();
    }),
    { numRuns: runs },
  );
  return ok;
}

const reached = (ok: Map<string, number>, names: string[]) => names.filter((n) => !(ok.get(n)! > 0));

test('7.2 (upfront pinning): random command sequences keep the invariants', (t) => {
  const ok = property('7.2', 80);
  t.deepEqual(reached(ok, ['init', 'start', 'update', 'reg', 'unreg', 'move', 'copy', 'vmsa', 'dbg']), []);
});

test('6.12 (demand pinning): random command sequences keep the invariants', (t) => {
  const ok = property('6.12', 50);
  t.deepEqual(reached(ok, ['init', 'start', 'update', 'reg', 'move', 'copy']), []);
});

test('local-migration-2021: random sequences with sends and receives keep the token rules', (t) => {
  const ok = property('local-migration-2021', 120);
  t.deepEqual(reached(ok, ['init', 'start', 'send', 'recv', 'dbg']), []);
});

/**
 * Partial vCPU setters never zero what the caller did not name: `setRegs({ rip })` moves only RIP,
 * `setSregs({ cs: { base } })` only that field of CS, and so on (read, lay over, write back); a
 * value that names every field is written without a read. Whole-area setters (XSAVE, LAPIC) refuse
 * a short area. A duplicate vCPU id says which id exists. On the mock, and on real KVM where it works.
 */
import test, { type ExecutionContext } from 'ava';
import { MockHost } from '../../lib/backends/mock/index.js';
import { HybridBackend } from '../../lib/backends/hybrid/hybrid-backend.js';
import type { Backend } from '../../lib/backend/contract.js';
import { KvmError } from '../../lib/backend/errors.js';
import { Kvm } from '../../lib/kvm/kvm.js';
import * as ioc from '../../lib/uapi/ioctls.js';
import { hwTest, kvmDevice } from '../helpers/hw.js';

/** A backend that counts the ioctls it passes on, by request. */
function counting(inner: Backend): { backend: Backend; count: (req: number) => number } {
  const seen = new Map<number, number>();
  const backend = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'ioctl')
        return (fd: never, req: number, arg?: never) => {
          seen.set(req, (seen.get(req) ?? 0) + 1);
          return target.ioctl(fd, req, arg);
        };
      const v = Reflect.get(target, key, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { backend, count: (req) => seen.get(req) ?? 0 };
}

function setters(t: ExecutionContext, backend: Backend, count?: (req: number) => number): void {
  const kvm = Kvm.open({ backend });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm();
  t.teardown(() => vm.close());
  const vcpu = vm.createVcpu(0);

  vcpu.setRegs({ rsp: 0x8000n, rax: 7n, rflags: 2n });
  vcpu.setRegs({ rip: 0x1000n });
  t.like(vcpu.getRegs(), { rip: 0x1000n, rsp: 0x8000n, rax: 7n, rflags: 2n }, 'rsp and rax survive setRegs({ rip })');

  const before = vcpu.getSregs();
  vcpu.setSregs({ cs: { base: 0x10000n, selector: 0x1000 } });
  const after = vcpu.getSregs();
  t.is(after.cs.base, 0x10000n);
  t.is(after.cs.selector, 0x1000);
  t.is(after.cs.limit, before.cs.limit, 'the rest of CS stays');
  t.is(after.cs.type, before.cs.type);
  t.deepEqual(after.ds, before.ds, 'other segments stay');
  t.is(after.cr0, before.cr0);

  const fpu = vcpu.getFpu();
  vcpu.setFpu({ fcw: 0x27f });
  t.like(vcpu.getFpu(), { fcw: 0x27f, mxcsr: fpu.mxcsr });

  vcpu.setDebugregs({ db: [0x1234n] });
  const dr = vcpu.getDebugregs();
  t.deepEqual(dr.db, [0x1234n, 0n, 0n, 0n], 'a shorter array changes only its first elements');
  t.is(dr.dr6, 0xffff0ff0n, 'DR6 keeps its reset value');
  t.is(dr.dr7, 0x400n, 'DR7 keeps its reset value');

  vcpu.setMpState({});
  t.is(vcpu.getMpState().mp_state, 0);

  t.throws(
    () => vcpu.setRegs({ rip: 1n, rpi: 2n } as never),
    { code: 'ERR_INVALID_ARG_VALUE', message: /rpi/ },
    'a misspelt register is refused',
  );
  t.throws(() => vcpu.setXsave(new Uint8Array(512)), { code: 'ERR_INVALID_ARG_VALUE', message: /whole 4096-byte area/ });
  t.notThrows(() => vcpu.setXsave(vcpu.getXsave()));

  if (count) {
    const gets = count(ioc.KVM_GET_REGS);
    vcpu.setRegs({ ...vcpu.getRegs(), rip: 0x2000n });
    t.is(count(ioc.KVM_GET_REGS), gets + 1, 'a whole kvm_regs is written without another read');
    t.is(vcpu.getRegs().rip, 0x2000n);
  }

  const e = t.throws(() => vm.createVcpu(0), { instanceOf: KvmError, code: 'EEXIST' });
  t.regex(e.message, /vCPU id 0 already exists in this VM/);
  t.regex(e.hint ?? '', /createVcpu\(\) with no id/);
  t.regex(e.stack ?? '', /vCPU id 0 already exists/, 'the stack says it too');
  t.is(vm.createVcpu().id, 1, 'the next free id');
}

test('mock: partial setters keep what they do not name; a duplicate vCPU id is named', (t) => {
  const c = counting(new MockHost());
  setters(t, c.backend, c.count);
});

hwTest(kvmDevice(), 'real KVM (hybrid): partial setters keep what they do not name; a duplicate vCPU id is named', (t) => {
  setters(t, new HybridBackend());
});

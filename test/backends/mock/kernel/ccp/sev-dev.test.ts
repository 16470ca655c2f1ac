/**
 * /dev/sev on the mock (drivers/crypto/ccp/sev-dev.c: sev_ioctl()): the driver's checks in order, EPERM for read-only
 * fds, FACTORY_RESET EBUSY while guests exist, temporary INIT around PEK_GEN, length queries,
 * ENOTSUPP for GET_ID2 before API 0.16, and fault injection (a failing firmware command, a PSP
 * time-out after which everything is EBUSY).
 */
import test, { type ExecutionContext } from 'ava';
import type { BackendFd } from '../../../../../lib/backend/contract.js';
import { MockHost, type MockHostOptions } from '../../../../../lib/backends/mock/index.js';
import { KVM_SEV, SEV_CMD } from '../../../../../lib/uapi/constants.js';
import type { IoctlStruct } from '../../../../../lib/uapi/ioctl-arg.js';
import * as ioc from '../../../../../lib/uapi/ioctls.js';
import { SEV_RET } from '../../../../../lib/uapi/sev-status.js';
import {
  sev_issue_cmd,
  sev_user_data_get_id2,
  sev_user_data_pdh_cert_export,
  sev_user_data_pek_csr,
  sev_user_data_status,
} from '../../../../../lib/uapi/psp-structs.js';
import { kvm_sev_cmd, kvm_sev_launch_start } from '../../../../../lib/uapi/sev-structs.js';

/** A mock host with /dev/sev open writable and read-only; what it opens is closed at teardown. */
function setup(t: ExecutionContext, opts: MockHostOptions = {}) {
  const host = new MockHost({ trace: true, ...opts });
  const sev = host.open('/dev/sev');
  t.teardown(() => sev.close());
  const ro = host.open('/dev/sev', { write: false });
  t.teardown(() => ro.close());
  const issue = (fd: BackendFd, cmd: number, data: IoctlStruct | null = null, error = 0) => {
    const arg = sev_issue_cmd.arg({ cmd, data, error });
    let code = 'ok';
    try {
      host.ioctl(fd, ioc.SEV_ISSUE_CMD, arg);
    } catch (e) {
      code = (e as { code: string }).code;
    }
    return { code, error: sev_issue_cmd.decode(arg.bytes).error };
  };
  const status = () => {
    const d = sev_user_data_status.arg({});
    issue(sev, SEV_CMD.PLATFORM_STATUS, d);
    return sev_user_data_status.decode(d.bytes);
  };
  const launchGuest = () => {
    const kvm = host.open('/dev/kvm');
    t.teardown(() => kvm.close());
    const vm = host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
    t.teardown(() => vm.close());
    host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, kvm_sev_cmd.arg({ id: KVM_SEV.INIT }));
    host.ioctl(
      vm,
      ioc.KVM_MEMORY_ENCRYPT_OP,
      kvm_sev_cmd.arg({ id: KVM_SEV.LAUNCH_START, data: kvm_sev_launch_start.arg({ policy: 0 }), sev_fd: sev.fd }),
    );
    return vm;
  };
  return { host, sev, ro, issue, status, launchGuest };
}

test('read-only fds: writable is false and commands that need write access answer EPERM', (t) => {
  const s = setup(t);
  t.false(s.ro.writable);
  t.true(s.sev.writable);
  for (const cmd of [SEV_CMD.FACTORY_RESET, SEV_CMD.PEK_GEN, SEV_CMD.PDH_GEN]) t.is(s.issue(s.ro, cmd, null, 0x11).code, 'EPERM');
  t.is(s.issue(s.ro, SEV_CMD.PEK_CSR, sev_user_data_pek_csr.arg({})).code, 'EPERM');
  t.is(s.issue(s.ro, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({})).code, 'ok');
  // PDH_CERT_EXPORT needs write access only to INIT the platform itself.
  t.is(s.issue(s.ro, SEV_CMD.PDH_CERT_EXPORT, sev_user_data_pdh_cert_export.arg({})).code, 'EPERM');
  s.launchGuest();
  const q = sev_user_data_pdh_cert_export.arg({});
  const r = s.issue(s.ro, SEV_CMD.PDH_CERT_EXPORT, q);
  t.is(r.code, 'EIO');
  t.is(r.error, SEV_RET.INVALID_LEN);
  t.true(sev_user_data_pdh_cert_export.decode(q.bytes).pdh_cert_len > 0);
});

test("cmd >= SEV_MAX is EINVAL without copy-back; other requests on /dev/sev are EINVAL; the 2021 kernel's SEV_MAX is 9", (t) => {
  const s = setup(t);
  const r = s.issue(s.sev, 13, null, 0x77);
  t.is(r.code, 'EINVAL');
  t.is(r.error, 0x77);
  t.like(
    t.throws(() => s.host.ioctl(s.sev, ioc.KVM_GET_API_VERSION)),
    { code: 'EINVAL' },
  );
  t.is(s.issue(s.sev, SEV_CMD.SNP_PLATFORM_STATUS).code, 'EINVAL', 'data 0');
  t.is(s.issue(s.ro, SEV_CMD.SNP_SET_CONFIG, null).code, 'EINVAL');
  const old = setup(t, { kernel: 'local-migration-2021' });
  t.is(old.issue(old.sev, SEV_CMD.SNP_COMMIT, null, 5).code, 'EINVAL');
});

test('FACTORY_RESET: EBUSY in WORKING; in INIT it shuts the platform down first', (t) => {
  const s = setup(t);
  const vm = s.launchGuest();
  t.is(s.status().state, 2);
  t.is(s.issue(s.sev, SEV_CMD.FACTORY_RESET).code, 'EBUSY');
  vm.close();
  t.is(s.status().state, 1);
  s.host.trace.clear();
  t.is(s.issue(s.sev, SEV_CMD.FACTORY_RESET).code, 'ok');
  t.deepEqual(
    s.host.trace.entries[0]!.firmware.map((f) => f.command),
    ['PLATFORM_STATUS', 'SHUTDOWN', 'FACTORY_RESET'],
  );
  t.is(s.status().state, 0);
});

test('PEK_GEN on an UNINIT platform: a temporary INIT (with DF_FLUSH) and SHUTDOWN around it', (t) => {
  const s = setup(t);
  s.host.trace.clear();
  t.is(s.issue(s.sev, SEV_CMD.PEK_GEN).code, 'ok');
  t.deepEqual(
    s.host.trace.entries[0]!.firmware.map((f) => f.command),
    ['INIT', 'DF_FLUSH', 'PEK_GEN', 'SHUTDOWN'],
  );
  t.is(s.status().state, 0);
});

test('PEK_CSR: a length query answers INVALID_LEN with the length; more than 16 KiB is EFAULT', (t) => {
  const s = setup(t);
  const q = sev_user_data_pek_csr.arg({});
  const r = s.issue(s.sev, SEV_CMD.PEK_CSR, q);
  t.is(r.code, 'EIO');
  t.is(r.error, SEV_RET.INVALID_LEN);
  const len = sev_user_data_pek_csr.decode(q.bytes).length;
  t.true(len > 0);
  t.is(s.issue(s.sev, SEV_CMD.PEK_CSR, sev_user_data_pek_csr.arg({ address: new Uint8Array(0x4001) })).code, 'EFAULT');
  const buf = new Uint8Array(len);
  t.is(s.issue(s.sev, SEV_CMD.PEK_CSR, sev_user_data_pek_csr.arg({ address: buf })).code, 'ok');
  t.false(buf.every((b) => b === 0));
});

test('GET_ID2: a query, then the ID; firmware API below 0.16 is ENOTSUPP (524)', (t) => {
  const s = setup(t);
  const q = sev_user_data_get_id2.arg({});
  t.is(s.issue(s.sev, SEV_CMD.GET_ID2, q).code, 'EIO');
  const len = sev_user_data_get_id2.decode(q.bytes).length;
  t.is(len, 64);
  const old = setup(t, {
    processor: { name: 'naples', apiMajor: 0, apiMinor: 14, build: 1, maxSevAsid: 15, minSevAsid: 1, cbitPosition: 47, sevEs: false },
  });
  const e = t.throws(() =>
    old.host.ioctl(old.sev, ioc.SEV_ISSUE_CMD, sev_issue_cmd.arg({ cmd: SEV_CMD.GET_ID2, data: sev_user_data_get_id2.arg({}) })),
  );
  t.like(e, { errno: -524 });
});

test('fault injection: the Nth firmware command fails with the chosen status (EIO, error = status)', (t) => {
  const s = setup(t, { faults: { failCommand: { nth: 2, status: SEV_RET.HWSEV_RET_PLATFORM } } });
  t.is(s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({})).code, 'ok');
  const r = s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({}));
  t.deepEqual(r, { code: 'EIO', error: SEV_RET.HWSEV_RET_PLATFORM });
  t.is(s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({})).code, 'ok');
});

test('a PSP time-out: ETIMEDOUT with error 0 once, then EBUSY (error untouched) for every command, KVM ones too', (t) => {
  const s = setup(t, { faults: { pspTimeoutAfter: 1 } });
  t.is(s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({})).code, 'ok');
  t.deepEqual(s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({}), 0x33), { code: 'ETIMEDOUT', error: 0 });
  t.deepEqual(s.issue(s.sev, SEV_CMD.PLATFORM_STATUS, sev_user_data_status.arg({}), 0x33), { code: 'EBUSY', error: 0x33 });
  const kvm = s.host.open('/dev/kvm');
  t.teardown(() => kvm.close());
  const vm = s.host.ioctlFd(kvm, ioc.KVM_CREATE_VM, 0);
  t.teardown(() => vm.close());
  const cmd = kvm_sev_cmd.arg({ id: KVM_SEV.INIT, error: 0x44 });
  t.like(
    t.throws(() => s.host.ioctl(vm, ioc.KVM_MEMORY_ENCRYPT_OP, cmd)),
    { code: 'EBUSY' },
  );
  t.true(s.host.sev.snapshot().pspDead);
});

test('the trace is JSON: bigints as hex, the command decoded by id', (t) => {
  const s = setup(t);
  s.status();
  const json = JSON.parse(JSON.stringify(s.host.trace)) as {
    request: string;
    command: string;
    fdKind: string;
    in: { data: string };
    dataOut: { api_major: number };
    firmware: unknown[];
  }[];
  const e = json.at(-1)!;
  t.is(e.request, 'SEV_ISSUE_CMD');
  t.is(e.command, 'PLATFORM_STATUS');
  t.is(e.fdKind, 'sev');
  t.regex(e.in.data, /^0x[0-9a-f]+$/);
  t.is(e.dataOut.api_major, 1);
  t.deepEqual(e.firmware, [{ command: 'PLATFORM_STATUS', status: 0 }]);
  const seen: string[] = [];
  const sink = new MockHost({ trace: (x) => seen.push(x.request) });
  const sinkKvm = sink.open('/dev/kvm');
  t.teardown(() => sinkKvm.close());
  sink.ioctl(sinkKvm, ioc.KVM_GET_API_VERSION);
  t.deepEqual(seen, ['KVM_GET_API_VERSION']);
});

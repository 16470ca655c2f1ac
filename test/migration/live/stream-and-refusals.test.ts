/**
 * The stream's framing (CRC, sizes, the private-page exception) and the refusals that need no second
 * host: an SEV-ES guest (no KVM_SEV_SEND_UPDATE_VMSA upstream), a NOSEND policy, a guest that has not
 * set the migration-control MSR; all on the mock, nothing connected, the guest left RUNNING.
 */
import test from 'ava';
import * as net from 'node:net';
import { MockHost } from '../../../lib/backends/mock/mock-host.js';
import { PageStateTracker } from '../../../lib/sev/page-states/page-state-tracker.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { migrate, type LiveGuest } from '../../../lib/migration/live/source.js';
import { receive, type ReceiveOptions } from '../../../lib/migration/live/target.js';
import { Duplex } from 'node:stream';
import {
  BATCH_BYTES,
  RECORD,
  RecordChannel,
  RecordParser,
  decodePrivatePage,
  encodeRecord,
  jsonRecord,
  privatePagePayload,
  sharedPagePayload,
} from '../../../lib/migration/live/stream.js';
import { SevGuestCommands } from '../../../lib/sev/kvm-sev-commands.js';
import { SevLaunch } from '../../../lib/sev/launch.js';
import { SevPlatform } from '../../../lib/sev/platform.js';
import { KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, SEV_POLICY } from '../../../lib/uapi/constants.js';

test('queued records are byte for byte the records send() writes, in order, in few writes', async (t) => {
  const writes: Buffer[] = [];
  const sink = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes.push(Buffer.from(chunk));
      cb();
    },
  });
  const ch = new RecordChannel(sink);
  t.teardown(() => sink.destroy());
  const page = (i: number) => new Uint8Array(4096).fill(i);
  const want: Buffer[] = [];
  // Enough pages for several batches, a private page between them, then a JSON record (which flushes).
  for (let i = 0; i < 150; i++) {
    if (i === 70) {
      const big = new Uint8Array(BATCH_BYTES + 10).fill(9); // larger than a batch: written alone, in order
      await ch.sendQueued(RECORD.SHARED_PAGE, big);
      want.push(encodeRecord(RECORD.SHARED_PAGE, big));
    }
    await ch.sendQueuedSharedPage(BigInt(i) << 12n, page(i));
    want.push(encodeRecord(RECORD.SHARED_PAGE, sharedPagePayload(BigInt(i) << 12n, page(i))));
  }
  const priv = privatePagePayload(0x6000n, new Uint8Array(52).fill(1), page(2));
  await ch.sendQueued(RECORD.PRIVATE_PAGE, priv);
  want.push(encodeRecord(RECORD.PRIVATE_PAGE, priv));
  await ch.sendJson(RECORD.END, { n: 1 });
  want.push(jsonRecord(RECORD.END, { n: 1 }));
  t.true(Buffer.concat(writes).equals(Buffer.concat(want)));
  t.true(writes.length < 10, `${writes.length} writes for ${want.length} records`);
});

test('records round-trip through the parser in any split; a changed byte fails the CRC', (t) => {
  const recs = [
    jsonRecord(RECORD.HELLO, { version: 1 }),
    encodeRecord(RECORD.SHARED_PAGE, sharedPagePayload(0x5000n, new Uint8Array(4096).fill(7))),
    encodeRecord(RECORD.PRIVATE_PAGE, privatePagePayload(0x6000n, new Uint8Array(52).fill(1), new Uint8Array(4096).fill(2))),
  ];
  const all = Buffer.concat(recs);
  for (const step of [1, 7, 4096, all.length]) {
    const p = new RecordParser();
    const got: number[] = [];
    for (let o = 0; o < all.length; o += step) {
      p.push(all.subarray(o, o + step));
      for (let r = p.take(); r; r = p.take()) got.push(r.type);
    }
    t.deepEqual(got, [RECORD.HELLO, RECORD.SHARED_PAGE, RECORD.PRIVATE_PAGE], `split every ${step} bytes`);
  }
  const shared = Buffer.from(recs[1]!);
  shared[8 + 8 + 100]! ^= 1;
  const p = new RecordParser();
  p.push(shared);
  t.throws(() => p.take(), { code: 'ERR_KVM_SEV_MIGRATION_PROTOCOL', message: /CRC of a SHARED_PAGE record/ });
});

test("a private page's packet is left to the firmware's MAC: the CRC covers its address, not its bytes", (t) => {
  const raw = Buffer.from(encodeRecord(RECORD.PRIVATE_PAGE, privatePagePayload(0x6000n, new Uint8Array(52), new Uint8Array(4096))));
  raw[raw.length - 10]! ^= 1; // in trans
  const p = new RecordParser();
  p.push(raw);
  const r = p.take()!;
  t.is(decodePrivatePage(r.payload).gpa, 0x6000n);
  const moved = Buffer.from(raw);
  moved[8 + 6]! ^= 1; // in the address
  const q = new RecordParser();
  q.push(moved);
  t.throws(() => q.take(), { message: /CRC of a PRIVATE_PAGE record/ });
});

test('a record announcing more than 16 MiB is refused before it is buffered', (t) => {
  const head = Buffer.alloc(8);
  head[0] = RECORD.STATE;
  head.writeUInt32BE(64 << 20, 4);
  const p = new RecordParser();
  p.push(head);
  t.throws(() => p.take(), { message: /at most/ });
});

/** A launched guest on the mock, as migrate() takes it (the mock runs no guest code: no vCPU loop). */
async function mockGuest(t: import('ava').ExecutionContext, es: boolean, policy: number, ready: boolean): Promise<LiveGuest> {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  t.teardown(() => kvm.close());
  const vm = kvm.createVm(es ? KVM_X86_SEV_ES_VM : KVM_X86_SEV_VM);
  t.teardown(() => vm.close());
  const platform = SevPlatform.open(host);
  t.teardown(() => platform.close());
  const memory = vm.addMemory({ guestPhysAddr: 0n, size: 0x10000, slot: 0 });
  const initialized = await SevLaunch.init(vm, { platform, es }); // INIT2 before any vCPU
  const vcpu = vm.createVcpu(0);
  t.teardown(() => vcpu.close());
  const launching = await initialized.launchStart({ policy });
  const pageStates = new PageStateTracker({ ram: [{ gpa: 0n, size: 0x10000 }] });
  pageStates.vmEvent('LAUNCH_START');
  await launching.launchUpdateData(memory);
  pageStates.launchUpdate(0n, 0x10000);
  if (es) await (launching as unknown as { launchUpdateVmsa(): Promise<unknown> }).launchUpdateVmsa();
  await (await launching.launchMeasure()).launchFinish();
  pageStates.vmEvent('LAUNCH_FINISH');
  pageStates.addVcpu(0);
  if (ready) pageStates.writeMigrationControl(0, 1n);
  return {
    vm,
    vcpus: [vcpu],
    memory: [{ slot: 0, memory }],
    sev: new SevGuestCommands(vm, platform),
    platform,
    pageStates,
    pause: async () => {},
    resume: () => {},
  };
}

/** A listener that records whether anyone connected. */
async function listener(t: import('ava').ExecutionContext) {
  let connected = false;
  const server = net.createServer((s) => {
    connected = true;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, connected: () => connected };
}

for (const [title, es, policy, ready, reason] of [
  [
    'an SEV-ES guest is refused: upstream KVM cannot send its VMSA',
    true,
    SEV_POLICY.ES,
    true,
    /SEV-ES guest: upstream KVM has no KVM_SEV_SEND_UPDATE_VMSA/,
  ],
  ['a NOSEND policy is refused', false, SEV_POLICY.NOSEND, true, /NOSEND/],
  ['a guest that has not set the migration-control MSR is refused', false, 0, false, /MSR_KVM_MIGRATION_CONTROL/],
] as const) {
  test(`${title}, before connecting; the guest stays RUNNING`, async (t) => {
    const guest = await mockGuest(t, es, policy, ready);
    const target = await listener(t);
    const r = await migrate(guest, { to: { port: target.port } });
    t.is(r.owner, 'source');
    t.regex(r.reason ?? '', reason);
    t.true(r.nothingSent);
    t.false(r.cancelled);
    t.false(target.connected());
    t.is((await guest.sev.guestStatus()).stateName, 'RUNNING');
  });
}

test('bad arguments to migrate() are typed errors before anything happens; the guest stays RUNNING', async (t) => {
  const guest = await mockGuest(t, false, 0, true);
  const target = await listener(t);
  const to = { port: target.port };
  const bad: [unknown, unknown, string][] = [
    [null, { to }, 'ERR_INVALID_ARG_TYPE'],
    [guest, undefined, 'ERR_INVALID_ARG_TYPE'],
    [guest, {}, 'ERR_INVALID_ARG_TYPE'],
    [{ ...guest, vcpus: 'x' }, { to }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...guest, pause: 1 }, { to }, 'ERR_INVALID_ARG_TYPE'],
    [guest, { to, downtimeLimitMs: '300' }, 'ERR_INVALID_ARG_TYPE'],
    [guest, { to, downtimeLimitMs: 0 }, 'ERR_OUT_OF_RANGE'],
    [guest, { to, timeLimitMs: 1.5 }, 'ERR_OUT_OF_RANGE'],
    [guest, { to, answerTimeoutMs: 2 ** 31 }, 'ERR_OUT_OF_RANGE'],
    [guest, { to, onProgress: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [g, o, code] of bad)
    await t.throwsAsync(migrate(g as LiveGuest, o as Parameters<typeof migrate>[1]), { code }, JSON.stringify(o ?? null));
  t.false(target.connected());
  t.is((await guest.sev.guestStatus()).stateName, 'RUNNING');
});

test('bad arguments to receive() are typed errors before anything listens', async (t) => {
  const host = new MockHost();
  const kvm = Kvm.open({ backend: host });
  const platform = SevPlatform.open(host);
  t.teardown(() => {
    platform.close();
    kvm.close();
  });
  let listened = 0;
  const ok = { from: { port: 0, host: '127.0.0.1' }, kvm, platform, onListening: () => listened++ };
  const bad: [unknown, string][] = [
    [null, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, from: undefined }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, kvm: {} }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, platform: undefined }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, onProgress: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, setup: 1 }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, amdCerts: [1, 2] }, 'ERR_INVALID_ARG_TYPE'],
    [{ ...ok, recordTimeoutMs: 0 }, 'ERR_OUT_OF_RANGE'],
    [{ ...ok, recordTimeoutMs: '5' }, 'ERR_INVALID_ARG_TYPE'],
  ];
  for (const [o, code] of bad) await t.throwsAsync(receive(o as ReceiveOptions), { code }, String(Object.keys(o ?? {})));
  t.is(listened, 0);
});

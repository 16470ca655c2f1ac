/**
 * The stream over TLS (`node:tls`): two hosts in one process (two hybrid backends, each with its own
 * mock firmware), the target serving a throw-away certificate the source pins as its CA. A source that
 * does not trust the certificate never gets to send anything.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { DemoVmm, setUpExits } from '../../../lib/app/migration/demo-vmm.js';
import { HYPERCALL_DOORBELL_PORT } from '../../../lib/app/guest/vmm-programs.js';
import { HybridBackend } from '../../../lib/backends/hybrid/index.js';
import { mockAmdRoots } from '../../../lib/backends/mock/index.js';
import { Kvm } from '../../../lib/kvm/kvm.js';
import { migrate } from '../../../lib/migration/live/source.js';
import { receive } from '../../../lib/migration/live/target.js';
import { amdCertsBytes } from '../../../lib/migration/live/target-check.js';
import { SevPlatform } from '../../../lib/sev/platform.js';
import { kvmDevice } from '../../helpers/hw.js';

const req = kvmDevice();
const hw = req.ok ? test.serial : (title: string) => test.todo(`${title} — pending: ${req.reason}`);

function selfSigned(t: ExecutionContext): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-tls-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost',
  ], { stdio: 'ignore' }); // prettier-ignore
  return { key: readFileSync(key), cert: readFileSync(cert) };
}

function hostPair(t: ExecutionContext) {
  const make = () => {
    const backend = new HybridBackend({ emulateHypercalls: { port: HYPERCALL_DOORBELL_PORT } });
    const kvm = Kvm.open({ backend });
    t.teardown(() => kvm.close());
    const platform = SevPlatform.open(backend);
    t.teardown(() => platform.close());
    return { kvm, platform };
  };
  return { a: make(), b: make() };
}

hw('the stream over TLS: the guest moves, and counts on', async (t) => {
  let openssl: { key: Buffer; cert: Buffer };
  try {
    openssl = selfSigned(t);
  } catch {
    return t.pass('no openssl to make a certificate');
  }
  const { a, b } = hostPair(t);
  const src = await DemoVmm.launch({ kvm: a.kvm, platform: a.platform, doorbell: true, stepsPerSecond: 2000 });
  t.teardown(() => src.close());
  await src.waitSteps(100);
  let port = 0;
  const received = receive({
    from: { port: 0 },
    tls: { key: openssl.key, cert: openssl.cert },
    kvm: b.kvm,
    platform: b.platform,
    amdCerts: amdCertsBytes(mockAmdRoots()[1]!),
    setup: setUpExits,
    onListening: (addr) => (port = typeof addr === 'string' ? 0 : addr.port),
  });
  while (port === 0) await new Promise((r) => setTimeout(r, 5));
  const r = await migrate(src.liveGuest(), {
    to: { host: 'localhost', port },
    tls: { ca: openssl.cert, servername: 'localhost' },
    trustedRoots: mockAmdRoots(),
  });
  t.is(r.owner, 'target', r.reason);
  const got = await received;
  const tgt = DemoVmm.adopt(got, b.platform);
  t.teardown(() => tgt.close());
  await tgt.waitSteps(20);
  t.is(tgt.steps[0], src.steps.at(-1)! + 1);
});

hw('over TLS, a source that does not trust the target certificate sends nothing', async (t) => {
  let openssl: { key: Buffer; cert: Buffer };
  try {
    openssl = selfSigned(t);
  } catch {
    return t.pass('no openssl to make a certificate');
  }
  const { a, b } = hostPair(t);
  const src = await DemoVmm.launch({ kvm: a.kvm, platform: a.platform, doorbell: true });
  t.teardown(() => src.close());
  await src.waitSteps(20);
  // The target's own TLS server, closed at the end: no handshake completes, so receive() never gets a connection.
  const server = tls.createServer({ key: openssl.key, cert: openssl.cert });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  void receive({ from: { server }, kvm: b.kvm, platform: b.platform, amdCerts: amdCertsBytes(mockAmdRoots()[1]!) }).catch(() => undefined);
  const r = await migrate(src.liveGuest(), {
    to: { host: 'localhost', port },
    tls: {},
    trustedRoots: mockAmdRoots(),
    answerTimeoutMs: 2000,
  });
  t.is(r.owner, 'source');
  t.true(r.nothingSent);
  t.regex(r.reason ?? '', /could not connect|certificate/);
  await src.waitSteps(20);
});

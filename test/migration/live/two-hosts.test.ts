/**
 * Host-to-host live migration between two processes on this machine (each its own host: hybrid
 * backend, own mock firmware and chip keys), over TCP on loopback through a recording proxy: the
 * guest counts on with no step lost or repeated, memory and page states arrive equal, the stream
 * carries no private plaintext and does carry the shared pages' plaintext.
 */
import test from 'ava';
import { kvmDevice } from '../../helpers/hw.js';
import { PRIVATE_PATTERN, SHARED_PATTERN } from './patterns.js';
import { RECORD, startHost, startProxy, startTarget } from './helpers.js';

const req = kvmDevice();
const hw = req.ok ? test.serial : (title: string) => test.todo(`${title} — pending: ${req.reason}`);

hw('a running SEV guest moves to another host mid-run and counts on, its memory and page states equal', async (t) => {
  const target = await startTarget(t, { stepsAfter: 200 });
  const proxy = await startProxy(t, target.port);
  const source = startHost(t, 'source', proxy.port, { stepsPerSecond: 3000, stepsBefore: 300 });
  const [s, d] = await Promise.all([source.done, target.done]);
  const so = s.json as {
    result: { owner: string; rounds: number; privatePages: number; sharedPages: number; downtimeMs: number };
    lastStep: number;
    hashes: string[];
    pageStates: string[];
    tracker: { vmState: string; generation: number };
    status: string;
  };
  const to = d.json as {
    ok: boolean;
    steps: number[];
    hashes: string[];
    pageStates: string[];
    migrationControl: number;
    tracker: { runs: string[]; vmState: string; generation: number };
    status: string;
    leaks: { fds: number; guests: number };
  };
  t.truthy(so, s.stderr.slice(-2000));
  t.truthy(to, d.stderr.slice(-2000));
  t.is(so.result.owner, 'target', JSON.stringify(so.result));
  t.true(to.ok, JSON.stringify(to));
  // The source's guest is SENT: it can never run again there (no clone).
  t.is(so.status, 'SENT');
  t.is(to.status, 'RUNNING');
  // No step lost or repeated: the target's first step follows the source's last.
  t.is(to.steps[0], so.lastStep + 1);
  t.true(to.steps.every((v, i) => i === 0 || v === to.steps[i - 1]! + 1));
  // Memory equal page for page (the source's frozen at the stop, the target's before it resumed).
  t.is(to.hashes.length, so.hashes.length);
  const differ = so.hashes.map((h, i) => (h === to.hashes[i] ? -1 : i)).filter((i) => i >= 0);
  t.deepEqual(differ, []);
  t.deepEqual(to.pageStates, so.pageStates);
  t.true(
    so.pageStates.some((r) => r.endsWith(':shared')),
    'the guest made pages shared',
  );
  t.is(to.migrationControl, 1);
  // The target's tracker goes on where the source's stopped: same pages and boot generation; the VM
  // states follow SEND_FINISH (never runs again) and RECEIVE_FINISH.
  t.deepEqual(to.tracker.runs, so.pageStates);
  t.is(to.tracker.generation, so.tracker.generation);
  t.is(to.tracker.vmState, 'running');
  t.is(so.tracker.vmState, 'sent');
  // Every page once, at least: 256 pages of 1 MiB.
  t.true(so.result.privatePages + so.result.sharedPages >= 256);
  t.true(so.result.sharedPages >= 4);
  // The stream: no private plaintext, the shared plaintext.
  const stream = proxy.captured();
  t.is(stream.indexOf(PRIVATE_PATTERN), -1, 'a private page left in plaintext');
  t.not(stream.indexOf(SHARED_PATTERN), -1, 'the shared pages travel as plaintext');
  t.true((proxy.counts.get(RECORD.PRIVATE_PAGE) ?? 0) >= 200);
  t.deepEqual(to.leaks, { fds: to.leaks.fds, guests: 0 });
});

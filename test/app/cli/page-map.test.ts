/** `kvm-sev page-map` through the built CLI: the page map of a running guest, on the mock and on the hybrid. */
import test from 'ava';
import { assertUsageError, runCli } from '../../helpers/cli.js';
import { hwTest, kvmDevice } from '../../helpers/hw.js';

interface Report {
  backend: string;
  hypercalls: string;
  snapshots: { at: string; map: string; migrationReady: boolean; generation: number }[];
  changes: { cause: string; generation: number }[];
  log: { kind: string; vcpu?: number; reason: string }[];
  records: ({ op: string; result: number }[] | null)[];
}

const json = (...args: string[]) => {
  const r = runCli(['page-map', ...args, '--json']);
  if (r.status !== 0) throw new Error(`status ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
};

test('page-map --backend mock --json: the map at launch, at each pause of the guest and at its end', (t) => {
  const rep = json('--backend', 'mock');
  t.is(rep.backend, 'mock');
  t.is(rep.hypercalls, 'model');
  t.deepEqual(
    rep.snapshots.map((s) => [s.map, s.migrationReady, s.generation]),
    [
      ['PPPPPPPPPPPPPPPP', false, 1],
      ['PPPPPPPSPPPPSSSS', true, 1],
      ['PPPPPPPSPPPPSSPP', true, 1],
      ['PPPPPPPSPPPPPPPP', true, 2],
    ],
  );
  t.deepEqual(
    rep.changes.slice(0, 3).map((c) => c.cause),
    ['launch', 'launch-finish', 'launch-finish'],
  );
  t.deepEqual(rep.records, [null], 'the mock runs no guest code, so there is no guest record');
});

test('page-map --scenario kexec-race: the late request corrupts the map without generations and is ignored with them', (t) => {
  const without = json('--backend', 'mock', '--scenario', 'kexec-race', '--no-generations');
  const withGen = json('--backend', 'mock', '--scenario', 'kexec-race');
  t.is(without.snapshots.at(-1)!.map, 'PPPPPPPPPPSPSPPP');
  t.is(withGen.snapshots.at(-1)!.map, 'PPPPPPPPPPPPSPPP');
  t.deepEqual(
    withGen.log.filter((e) => e.kind === 'stale').map((e) => e.vcpu),
    [1],
  );
  t.is(without.log.filter((e) => e.kind === 'stale').length, 0);
});

test('page-map: a bad --scenario is a usage error', (t) => {
  assertUsageError(t, runCli(['page-map', '--scenario', 'reboot']), /--scenario must be boot or kexec-race/);
});

hwTest(
  kvmDevice(),
  'page-map on the hybrid: a real guest, the doorbell labelled EMULATED, the map as text and the guest record in JSON',
  (t) => {
    const r = runCli(['page-map', '--backend', 'hybrid']);
    t.is(r.status, 0, r.stderr);
    t.regex(r.stdout, /^backend: hybrid/m);
    t.regex(r.stdout, /hypercalls: EMULATED doorbell \(OUT to port 0xe8\)/);
    t.regex(r.stdout, /^ {2}PPPPPPPSPPPPSSSS {2}vCPU 0 paused \(sync 1\) +VM running, migration ready, generation 1$/m);
    t.regex(r.stdout, /^ {2}PPPPPPPSPPPPPPPP {2}the guest finished +VM running, migration ready, generation 2$/m);
    t.regex(r.stdout, /^ {2}0x07000 {3}1 pages {2}shared$/m);
    const rep = json('--backend', 'hybrid');
    t.is(rep.hypercalls, 'doorbell');
    const rec = rep.records[0]!;
    t.is(rec.length, 12);
    t.true(rec.filter((e) => e.op === 'map').every((e) => e.result === 0));
    t.is(rec[0]!.result & 0x30000, 0x30000);
  },
);

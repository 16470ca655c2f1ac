/**
 * Property tests (fast-check): random sequences of hypercalls (share/unshare, with and without boot
 * IDs, in and out of RAM), completions, resets of all RAM and MSR writes from several vCPUs, checked
 * against a model that keeps one state per page in a plain array and spells the generation rules out
 * again. Also: the change events alone rebuild the final map (the "dirty" notice a migration relies
 * on), and a snapshot restores it exactly.
 */
import test from 'ava';
import fc from 'fast-check';
import { PageStateTracker, type PageStateSnapshot } from '../../../lib/sev/page-states/page-state-tracker.js';
import type { PageState } from '../../../lib/sev/page-states/page-state-view.js';

/** RAM: pages [0, 16) and [32, 40); page 16..31 is a hole. */
const RAM: [number, number][] = [
  [0, 16],
  [32, 40],
];
const inRam = (p: number) => RAM.some(([a, b]) => p >= a && p < b);
const VCPUS = 3;

type Cmd =
  | { k: 'hc'; vcpu: number; page: number; n: number; enc: boolean; id: number }
  | { k: 'settle'; vcpu: number }
  | { k: 'reset'; vcpu: number; id: number }
  | { k: 'msr'; vcpu: number; value: number };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    arbitrary: fc.record({
      k: fc.constant('hc' as const),
      vcpu: fc.nat(VCPUS - 1),
      page: fc.nat(41),
      n: fc.integer({ min: 1, max: 12 }),
      enc: fc.boolean(),
      id: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 })),
    }),
    weight: 6,
  },
  { arbitrary: fc.record({ k: fc.constant('settle' as const), vcpu: fc.nat(VCPUS - 1) }), weight: 2 },
  { arbitrary: fc.record({ k: fc.constant('reset' as const), vcpu: fc.nat(VCPUS - 1), id: fc.integer({ min: 0, max: 4 }) }), weight: 1 },
  { arbitrary: fc.record({ k: fc.constant('msr' as const), vcpu: fc.nat(VCPUS - 1), value: fc.constantFrom(0, 1, 1, 2) }), weight: 2 },
);

interface ModelOptions {
  generations: boolean;
  ids: boolean;
}

/** The model: an array of page states, and the rules in the plainest form. */
class Model {
  pages: (PageState | undefined)[] = Array.from({ length: 40 }, (_, p) => (inRam(p) ? 'private' : undefined));
  owner: (number | undefined)[] = Array.from({ length: 40 }, () => undefined);
  /** The generation of the request that last changed each page (launch: 1). */
  pageGen: number[] = Array.from({ length: 40 }, () => 1);
  pending = new Map<number, { from: number; to: number; state: PageState; gen: number }>();
  ready = false;
  gen = 1;
  vgen = Array.from({ length: VCPUS }, () => 1);
  cur: number | undefined;
  old = new Set<number>();
  constructor(readonly o: ModelOptions) {}

  settle(v: number) {
    const p = this.pending.get(v);
    if (!p) return;
    this.pending.delete(v);
    for (let i = p.from; i < p.to; i++)
      if (this.pages[i] === 'converting' && this.owner[i] === v) {
        this.pages[i] = p.state;
        this.owner[i] = undefined;
        this.pageGen[i] = p.gen;
      }
  }
  advance() {
    this.gen++;
    if (this.cur !== undefined) this.old.add(this.cur);
    this.cur = undefined;
  }
  msr(v: number, value: number) {
    if (value > 1) return;
    if (this.ready && value === 0) this.advance();
    this.ready = value === 1;
    this.vgen[v] = this.gen;
    if (value === 1) this.vgen.fill(this.gen);
  }
  hc(v: number, page: number, n: number, enc: boolean, id: number): bigint {
    this.settle(v);
    if (!(id === 0 || this.o.ids)) return -22n;
    for (let i = page; i < page + n; i++) if (!inRam(i) || (i >= 16 && page < 16)) return -22n;
    let gen = this.gen;
    /** A late request (from a vCPU still in an older generation) leaves the pages newer ones declared. */
    let upTo = Infinity;
    if (this.o.generations) {
      if (id !== 0) {
        if (this.old.has(id)) return 0n;
        if (id !== this.cur) {
          if (this.cur !== undefined) this.advance();
          this.cur = id;
          this.vgen[v] = this.gen;
        }
        gen = this.gen;
      } else if (this.vgen[v]! < this.gen) {
        gen = this.vgen[v]!;
        upTo = gen;
      }
    }
    this.pending.set(v, { from: page, to: page + n, state: enc ? 'private' : 'shared', gen });
    for (let i = page; i < page + n; i++) {
      if (this.pageGen[i]! > upTo) continue;
      this.pages[i] = 'converting';
      this.owner[i] = v;
      this.pageGen[i] = gen;
    }
    return 0n;
  }
}

function drive(tr: PageStateTracker, m: Model, cmds: readonly Cmd[]): void {
  for (const c of cmds) {
    if (c.k === 'hc') {
      const got = tr.mapGpaRange(c.vcpu, BigInt(c.page) << 12n, BigInt(c.n), c.enc, c.id);
      const want = m.hc(c.vcpu, c.page, c.n, c.enc, c.id);
      // The handler checks attrs (and so IDs) before the tracker: only in-RAM checks are the tracker's.
      if (!(c.id !== 0 && !m.o.ids)) if (got.ret !== want) throw new Error(`ret ${got.ret} != ${want} for ${JSON.stringify(c)}`);
    } else if (c.k === 'settle') {
      tr.settle(c.vcpu);
      m.settle(c.vcpu);
    } else if (c.k === 'reset') {
      tr.mapGpaRange(c.vcpu, 0n, 16n, true, c.id);
      m.hc(c.vcpu, 0, 16, true, c.id);
      tr.mapGpaRange(c.vcpu, 32n << 12n, 8n, true, c.id);
      m.hc(c.vcpu, 32, 8, true, c.id);
    } else {
      tr.writeMigrationControl(c.vcpu, BigInt(c.value));
      m.msr(c.vcpu, c.value);
    }
  }
}

function running(o: ModelOptions): PageStateTracker {
  const tr = new PageStateTracker({
    ram: RAM.map(([a, b]) => ({ gpa: BigInt(a) << 12n, size: (b - a) * 4096 })),
    generations: o.generations,
    explicitGenerationIds: o.ids,
  });
  tr.vmEvent('LAUNCH_START');
  tr.vmEvent('LAUNCH_FINISH');
  for (let v = 0; v < VCPUS; v++) tr.addVcpu(v);
  return tr;
}

const options = fc.record({ generations: fc.boolean(), ids: fc.boolean() });
/** Commands whose boot IDs are 0 unless the model honours them (the handler rejects them otherwise). */
const cmdsFor = (o: ModelOptions) =>
  fc.array(cmd, { maxLength: 60 }).map((cs) => (o.ids ? cs : cs.map((c) => ('id' in c ? { ...c, id: 0 } : c))));

test('the tracker agrees with the model page by page, and its runs are maximal, ordered and tile RAM', (t) => {
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
    fc.assert(
      fc.property(
        options.chain((o) => fc.tuple(fc.constant(o), cmdsFor(o))),
        ([o, cmds]) => {
          const tr = running(o);
          const m = new Model(o);
          drive(tr, m, cmds);
          for (let p = 0; p < 40; p++) {
            const gpa = BigInt(p) << 12n;
            if (!inRam(p)) {
              if (!throwsRange(() => tr.pageState(gpa))) return false;
            } else if (tr.pageState(gpa) !== m.pages[p]) return false;
          }
          if (tr.migrationReady !== m.ready || tr.generation !== m.gen) return false;
          const rs = [...tr.runs()];
          let covered = 0;
          for (const [i, r] of rs.entries()) {
            const first = Number(r.gpa >> 12n);
            for (let p = first; p < first + r.pages; p++) if (m.pages[p] !== r.state) return false;
            covered += r.pages;
            const prev = rs[i - 1];
            if (prev) {
              const prevEnd = Number(prev.gpa >> 12n) + prev.pages;
              if (prevEnd > first) return false;
              if (prevEnd === first && prev.state === r.state) return false; // not maximal
            }
          }
          return covered === 24;
        },
      ),
      { numRuns: 400 },
    ),
  );
});

test('the change events alone rebuild the final page map from the launched one (what a migration follows)', (t) => {
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
    fc.assert(
      fc.property(
        options.chain((o) => fc.tuple(fc.constant(o), cmdsFor(o))),
        ([o, cmds]) => {
          const tr = running(o);
          const rebuilt = new Map<number, PageState>();
          for (const r of tr.runs()) for (let p = 0; p < r.pages; p++) rebuilt.set(Number(r.gpa >> 12n) + p, r.state);
          tr.onChange((c) => {
            for (let p = 0; p < c.pages; p++) rebuilt.set(Number(c.gpa >> 12n) + p, c.to);
          });
          drive(tr, new Model(o), cmds);
          for (const r of tr.runs()) for (let p = 0; p < r.pages; p++) if (rebuilt.get(Number(r.gpa >> 12n) + p) !== r.state) return false;
          return true;
        },
      ),
      { numRuns: 300 },
    ),
  );
});

test('a snapshot taken anywhere restores a tracker that then behaves exactly like the original', (t) => {
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
    fc.assert(
      fc.property(
        options.chain((o) => fc.tuple(fc.constant(o), cmdsFor(o), cmdsFor(o))),
        ([o, before, after]) => {
          const a = running(o);
          drive(a, new Model(o), before);
          const b = PageStateTracker.fromSnapshot(JSON.parse(JSON.stringify(a.snapshot())) as PageStateSnapshot);
          const m1 = new Model(o);
          const m2 = new Model(o);
          drive(a, m1, after);
          drive(b, m2, after);
          return JSON.stringify(a.snapshot()) === JSON.stringify(b.snapshot());
        },
      ),
      { numRuns: 200 },
    ),
  );
});

test('kexec race, randomised: whatever the old boot shared and whenever its late requests land after the reset, the new boot ends with exactly its own shares', (t) => {
  // fc.assert throws with the shrunk counterexample when a property fails.
  t.notThrows(() =>
    fc.assert(
      fc.property(
        fc.array(fc.nat(15), { maxLength: 6 }),
        fc.array(fc.nat(15), { maxLength: 6 }),
        fc.array(fc.nat(15), { minLength: 1, maxLength: 4 }),
        fc.nat(6),
        (oldShared, newShared, late, lateAt) => {
          const run = (generations: boolean) => {
            const tr = running({ generations, ids: false });
            tr.writeMigrationControl(0, 1n);
            for (const p of oldShared) {
              tr.mapGpaRange(0, BigInt(p) << 12n, 1n, false);
              tr.settle(0);
            }
            tr.writeMigrationControl(0, 0n);
            tr.mapGpaRange(0, 0n, 16n, true);
            tr.settle(0);
            const lateReqs = () => {
              for (const p of late) {
                tr.mapGpaRange(1, BigInt(p) << 12n, 1n, false);
                tr.settle(1);
              }
            };
            newShared.forEach((p, i) => {
              if (i === lateAt) lateReqs();
              tr.mapGpaRange(0, BigInt(p) << 12n, 1n, false);
              tr.settle(0);
            });
            if (lateAt >= newShared.length) lateReqs();
            tr.writeMigrationControl(1, 0n);
            tr.writeMigrationControl(0, 1n);
            const shared = new Set<number>();
            for (let p = 0; p < 16; p++) if (tr.pageState(BigInt(p) << 12n) === 'shared') shared.add(p);
            return shared;
          };
          const want = new Set(newShared);
          const on = run(true);
          const off = run(false);
          const wrongWithout = late.some((p) => !want.has(p));
          return eq(on, want) && eq(off, new Set([...newShared, ...late])) && (wrongWithout ? !eq(off, want) : true);
        },
      ),
      { numRuns: 300 },
    ),
  );
});

const eq = (a: Set<number>, b: Set<number>) => a.size === b.size && [...a].every((x) => b.has(x));
function throwsRange(f: () => unknown): boolean {
  try {
    f();
    return false;
  } catch (e) {
    return e instanceof RangeError;
  }
}

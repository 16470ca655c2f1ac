/**
 * Every fd, VM, mapping, socket, child process, temporary folder or SEV-service connection a test
 * opens is released on every path (`using`, or a t.teardown() registered right after it), so a test
 * that fails half-way leaks nothing into the rest of the run. The rules are in ./resource-lint.ts;
 * the second test shows the lint catches what it should (and accepts what it should).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceFiles } from './import-graph.js';
import { lintSource } from './resource-lint.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

/**
 * The child VMMs of the handoff tests are programs, not tests: each runs in a process of its own,
 * and its exit (or the SIGKILL the tests send on purpose) releases what it holds; the test that
 * starts one kills it at teardown (test/helpers/child-vmm.ts).
 */
const PROGRAMS = new Set(['hw-test/helpers/handoff-vmm.ts', 'hw-test/helpers/sev-handoff-vmm.ts']);

test('every resource a test opens is released by `using` or a t.teardown() (or a finally right after it)', (t) => {
  const files = [...sourceFiles(root, 'test'), ...sourceFiles(root, 'hw-test')].filter((f) => !PROGRAMS.has(f));
  t.true(files.length > 40, `${files.length} files read`);
  const findings = files.flatMap((f) => lintSource(f, readFileSync(join(root, f), 'utf8')));
  t.deepEqual(
    findings.map((x) => `${x.file}:${x.line}: ${x.what}: ${x.why}`),
    [],
  );
});

/** Each body runs inside `test('…', async (t) => { … })`, with `b` a backend and `kvm` a Kvm in scope. */
const lint = (body: string): string[] =>
  lintSource('snippet.test.ts', `test('x', async (t) => {\n${body}\n});`).map((x) => `${x.line - 1}: ${x.what}`);

test('the lint: what it reports and what it accepts', (t) => {
  // Closed only at the end of the body (a throw before that leaks it), or never.
  t.deepEqual(lint(`const vm = kvm.createVm();\nt.is(1, 1);\nvm.close();`), ['1: createVm()']);
  t.deepEqual(lint(`const fd = b.open('/dev/kvm');`), ["1: open('/dev/kvm')"]);
  t.deepEqual(lint(`using k = Kvm.open({ backend: b });\nconst p = SevPlatform.open(b);`), ['2: SevPlatform.open()']);
  // A teardown that names something else; a finally that is not right after the open.
  t.deepEqual(lint(`const m = b.mmapAnonymous(4096);\nconst n = b.mmapAnonymous(4096);\nt.teardown(() => n.unmap());`), [
    '1: mmapAnonymous()',
  ]);
  t.deepEqual(lint(`const d = mkdtempSync('/tmp/x');\nt.is(1, 1);\ntry { t.pass(); } finally { rmSync(d); }`), ['1: mkdtempSync()']);
  // Each end of a pair; an fd opened inside an argument; one opened in a call t.throws expects to fail on.
  t.deepEqual(lint(`const [x, y] = b.socketPair();\nt.teardown(() => x.close());`), ['1: socketPair()']);
  t.deepEqual(lint(`b.ioctl(b.open('/dev/kvm'), 1);`), ["1: open('/dev/kvm')"]);
  t.deepEqual(lint(`t.throws(() => b.mmapShared(b.open('/dev/kvm'), 4096));`), ["1: open('/dev/kvm')"]);
  // Received fds, a child process, a Worker, a connection to the shared SEV service.
  t.deepEqual(lint(`const got = await b.recvFds(s, 16, 4);\nt.is(got.fds.length, 1);`), ['1: recvFds()']);
  t.deepEqual(lint(`const p = spawn('node', []);\nconst w = new Worker('x');`), ['1: spawn()', '2: new Worker()']);
  t.deepEqual(lint(`const h = new HybridBackend({ sevService: { socket } });`), ['1: new HybridBackend({ sevService })']);
  // A helper that opens must release too (it takes the test's t).
  t.deepEqual(lintSource('h.ts', `function setup(b) {\n  const kvm = b.open('/dev/kvm');\n  return kvm;\n}`).length, 1);
  // A class keeping fds on `this` without [Symbol.dispose]() releasing each of them.
  t.deepEqual(
    lintSource('c.ts', `class R {\n  a = h.open('/dev/kvm');\n  constructor() { this.b = h.open('/dev/sev'); }\n}`).map((x) => x.line),
    [2, 3],
  );

  // Accepted: using, t.teardown (also through a local function given by name), a finally right after,
  // closed at once, expected to fail, data-only receives, a Promise awaited later, Disposable classes.
  t.deepEqual(lint(`using vm = kvm.createVm();\nawait using p = SevPlatform.open(b);`), []);
  t.deepEqual(lint(`const vm = kvm.createVm();\nt.teardown(() => vm.close());`), []);
  t.deepEqual(lint(`const [x, y] = b.socketPair();\nt.teardown(() => [x, y].forEach((s) => s.close()));`), []);
  t.deepEqual(lint(`const fd = b.open('/dev/kvm');\nconst close = () => fd.close();\nt.teardown(close);`), []);
  t.deepEqual(lint(`const fd = b.open('/dev/kvm');\ntry {\n  t.pass();\n} finally {\n  fd.close();\n}`), []);
  t.deepEqual(lint(`b.ioctlFd(vm, 0xae41, 0).close();`), []);
  t.deepEqual(lint(`t.throws(() => b.ioctlFd(vm, 0xae41, 0));\nawait t.throwsAsync(b.recvFds(s, 0));`), []);
  t.deepEqual(lint(`t.is((await b.recvFds(s, 16, 0)).data.length, 1);\nconst r = b.recvFds(s, 16);\nt.is((await r).data[0], 7);`), []);
  t.deepEqual(lint(`const acc = b.unixAccept(l);\nconst s = await acc;\nt.teardown(() => s.close());`), []);
  t.deepEqual(lint(`let late;\nt.teardown(() => late?.close());\nt.is(code(() => (late = b.ioctlFd(vm, 1, 0))), 'ok');`), []);
  t.deepEqual(lint(`const vms = [];\nt.teardown(() => vms.forEach((v) => v.close()));\nvms.push(b.ioctlFd(kvm, 1, 0));`), []);
  t.deepEqual(lint("const script = `const kvm = Kvm.open({ backend });`; // a child's program: a string"), []);
  t.deepEqual(
    lintSource(
      'c.ts',
      `class R {\n  kvm = h.open('/dev/kvm');\n  [Symbol.dispose]() { this.kvm.close(); }\n}\ntest('x', (t) => {\n  using r = new R();\n  const s = new R();\n});`,
    ).map((x) => `${x.line}: ${x.what}`),
    ['7: new R()'],
  );
});

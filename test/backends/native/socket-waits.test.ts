/**
 * Socket waits JS can always end, and that hold no more than they were asked to (issue 10, cases 4,
 * 12, 14, 15): a failed thread creation is a JS error and waits are bounded per thread; two waits on
 * one socket both end when it closes; a connect to a listener that never accepts does not block the
 * event loop; recvFds takes exactly maxFds fds, and none is leaked when a worker shuts down with
 * fds arriving. Each runs in a child process where a failure would abort or hang it.
 */
import { hwTest, nativeAddon } from '../../helpers/hw.js';
import { describeChild, runChild } from '../../helpers/node-child.js';

const req = nativeAddon();

const PRELUDE = `
  const { NativeBackend } = await import(native);
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const b = new NativeBackend();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const settle = (p) => p.then((v) => { for (const f of v?.fds ?? (v?.close ? [v] : [])) f.close(); return 'resolved'; }, (e) => e.code);
  const within = (p, ms) => Promise.race([p, sleep(ms).then(() => 'stuck')]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-sev-waits-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));`;

hwTest(req, 'case 4: with no thread to be had, recvFds and sendFds reject with EAGAIN (pthread_create) instead of aborting', (t) => {
  if (process.getuid?.() !== 0) {
    t.pass('needs root to run the child as another user with its own RLIMIT_NPROC');
    return;
  }
  const r = runChild(
    `${PRELUDE}
    const { execFileSync } = await import('node:child_process');
    const [a, c] = b.socketPair();
    await fs.promises.readFile('/dev/null'); // the thread pool is up
    // Root ignores RLIMIT_NPROC; this child runs as nobody, so one task is already too many.
    execFileSync('prlimit', ['--pid', String(process.pid), '--nproc=1:1']);
    for (const [k, p] of [['recv', b.recvFds(c, 16)], ['send', b.sendFds(a, Uint8Array.of(1), [])], ['accept', b.unixAccept(b.unixListen(dir + '/l.sock'))]]) {
      try { await p; out[k] = 'resolved'; } catch (e) { out[k] = e.code + ' ' + e.syscall; }
    }
    a.close(); c.close();`,
    { uid: 65534, gid: 65534 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { recv: 'EAGAIN pthread_create', send: 'EAGAIN pthread_create', accept: 'EAGAIN pthread_create' });
});

hwTest(req, 'case 4: at most 128 socket waits per thread are pending; past that a wait is refused, and closing ends them all', (t) => {
  const r = runChild(`${PRELUDE}
    const pairs = [];
    const waits = [];
    for (let i = 0; i < 130; i++) {
      const [a, c] = b.socketPair();
      pairs.push(c, a); // the waiting end closes first: its waits are cancelled, not ended by EOF
      waits.push(settle(b.recvFds(c, 16)));
    }
    await sleep(200);
    for (const s of pairs) s.close();
    const codes = await within(Promise.all(waits), 5000);
    out.refused = codes.filter((c) => c === 'ERR_KVM_SEV_TOO_MANY_WAITS').length;
    out.cancelled = codes.filter((c) => c === 'ECANCELED').length;`);
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { refused: 2, cancelled: 128 });
});

hwTest(req, 'case 12: many waits on one socket (recv, accept): each message goes to one, closing the socket ends the rest', (t) => {
  // Every message wakes every waiter's poll; those that lose the race must wait again, not block in
  // recvmsg or accept4 where closing the socket cannot reach them.
  const r = runChild(
    `${PRELUDE}
    const tally = (codes) => ({ resolved: codes.filter((c) => c === 'resolved').length, cancelled: codes.filter((c) => c === 'ECANCELED').length });
    const [a, c] = b.socketPair();
    const recvs = Array.from({ length: 24 }, () => settle(b.recvFds(c, 16)));
    await sleep(200); // every thread is in poll()
    for (let i = 0; i < 12; i++) { await b.sendFds(a, Uint8Array.of(i), []); await sleep(20); }
    await sleep(200);
    c.close();
    out.recv = await within(Promise.all(recvs).then(tally), 3000);
    a.close();
    const l = b.unixListen(dir + '/many.sock');
    const accepts = Array.from({ length: 24 }, () => settle(b.unixAccept(l)));
    await sleep(200);
    const conns = [];
    for (let i = 0; i < 12; i++) { conns.push(b.unixConnect(dir + '/many.sock')); await sleep(20); }
    await sleep(200);
    l.close();
    out.accept = await within(Promise.all(accepts).then(tally), 3000);
    for (const x of conns) x.close();`,
    { timeoutMs: 30_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { recv: { resolved: 12, cancelled: 12 }, accept: { resolved: 12, cancelled: 12 } });
});

hwTest(req, 'case 14: connecting to a listener that never accepts does not block the event loop: EAGAIN once its queue is full', (t) => {
  const r = runChild(
    `${PRELUDE}
    const l = b.unixListen(dir + '/full.sock');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const conns = [];
    const codes = [];
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) {
      try { conns.push(b.unixConnect(dir + '/full.sock')); codes.push('ok'); }
      catch (e) { codes.push(e.code); out.hint = typeof e.hint === 'string'; }
      await sleep(2);
    }
    out.fast = Date.now() - t0 < 5000;
    out.ok = codes.filter((c) => c === 'ok').length;
    out.eagain = codes.filter((c) => c === 'EAGAIN').length;
    out.loopRan = ticks > 5;
    clearInterval(timer);
    for (const c of conns) c.close();
    l.close();`,
    { timeoutMs: 20_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.like(r.out, { fast: true, hint: true, loopRan: true });
  t.true((r.out?.['ok'] as number) >= 1 && (r.out?.['eagain'] as number) >= 1, JSON.stringify(r.out));
  t.is((r.out?.['ok'] as number) + (r.out?.['eagain'] as number), 20);
});

hwTest(req, 'case 15: recvFds takes exactly maxFds fds: one more (or any, for 0) is EMSGSIZE, and the extra fds are closed', (t) => {
  const r = runChild(`${PRELUDE}
    const probes = () => fs.readdirSync('/proc/self/fd').filter((f) => {
      try { return fs.readlinkSync('/proc/self/fd/' + f).includes('maxfds-probe'); } catch { return false; }
    }).length;
    const [a, c] = b.socketPair();
    const m = [b.memfdCreate('maxfds-probe', 4096), b.memfdCreate('maxfds-probe', 4096), b.memfdCreate('maxfds-probe', 4096)];
    const cases = [[1, 2], [0, 1], [3, 3], [2, 3], [2, 2]];
    out.got = [];
    for (const [maxFds, sent] of cases) {
      const p = b.recvFds(c, 16, maxFds).then((r) => { const n = r.fds.length; r.fds.forEach((f) => f.close()); return n; }, (e) => e.code);
      await b.sendFds(a, Uint8Array.of(1), m.slice(0, sent));
      out.got.push(await p);
    }
    for (const f of m) f.close();
    out.left = probes();
    a.close(); c.close();`);
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { got: ['EMSGSIZE', 'EMSGSIZE', 3, 'EMSGSIZE', 2], left: 0 });
});

hwTest(req, 'case 15: fds that arrive while a worker shuts down are closed, not leaked', (t) => {
  const r = runChild(
    `${PRELUDE}
    const { Worker } = await import('node:worker_threads');
    const probes = () => fs.readdirSync('/proc/self/fd').filter((f) => {
      try { return fs.readlinkSync('/proc/self/fd/' + f).includes('shutdown-probe'); } catch { return false; }
    }).length;
    for (let i = 0; i < 50; i++) {
      const w = new Worker(\`
        const { NativeBackend } = await import(\${JSON.stringify(native)});
        const b = new NativeBackend();
        const [a, c] = b.socketPair();
        const m = [0, 1, 2].map(() => b.memfdCreate('shutdown-probe', 4096));
        b.recvFds(c, 16, 8).catch(() => {});
        b.sendFds(a, Uint8Array.of(1), m).catch(() => {});
        for (const f of m) f.close();
        setTimeout(() => process.exit(0), \${i % 5});\`, { eval: true });
      w.on('error', () => {});
      await new Promise((res) => w.once('exit', res));
    }
    await sleep(100);
    out.leaked = probes();`,
    { timeoutMs: 120_000 },
  );
  t.is(r.status, 0, describeChild(r));
  t.deepEqual(r.out, { leaked: 0 });
});

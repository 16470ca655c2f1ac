/**
 * Mock PSP memory: the address-tweaked cipher, the pure mock's ciphertext controller, the hybrid's
 * plaintext controller (its host view equals the pure mock's bytes), and the firmware commands that
 * touch private memory (LAUNCH_UPDATE_DATA, DBG_DECRYPT / DBG_ENCRYPT; docs/sev-reference.md §4.2, §8).
 */
import test from 'ava';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { CiphertextMemory, memoryCipher, memoryCipherInto, memoryCounterBlock } from '../../../../lib/backends/mock/psp/index.js';
import { memoryCipherRangesInPlace } from '../../../../lib/backends/mock/psp/memory-cipher.js';
import { PlaintextMemory } from '../../../../lib/backends/hybrid/common/plaintext-memory.js';
import type { MemoryController } from '../../../../lib/backends/mock/psp/index.js';
import { SEV_POLICY } from '../../../../lib/uapi/constants.js';
import { SEV_RET, expectStatus, launch, range, ready, scriptedRandom } from './fixtures.js';
import type { MockFirmware, PhysRange } from '../../../../lib/backends/mock/psp/index.js';

const K1 = Buffer.alloc(16, 0x11);
const K2 = Buffer.alloc(16, 0x22);

test('memory cipher: keystream block at address a is AES(VEK, BE128(a >> 4)); an involution', (t) => {
  const data = randomBytes(64);
  const c = memoryCipher(K1, 0x12340n, data);
  const ecb = createCipheriv('aes-128-ecb', K1, null).setAutoPadding(false);
  const blocks = Buffer.concat([0x1234n, 0x1235n, 0x1236n, 0x1237n].map((b) => memoryCounterBlock(b << 4n)));
  const ks = ecb.update(blocks);
  t.deepEqual(c, Buffer.from(data.map((x, i) => x ^ ks[i]!)));
  t.deepEqual(memoryCipher(K1, 0x12340n, c), data);
  t.is(memoryCounterBlock(0xfedcba9876543210n).toString('hex'), '00000000000000000fedcba987654321');
});

test('memory cipher: a range starting mid-block is the matching slice of the aligned result', (t) => {
  const data = randomBytes(100);
  const whole = memoryCipher(K1, 0x5000n, data);
  for (const off of [1, 7, 15, 16, 17, 31, 33]) {
    for (const len of [1, 15, 16, 40, 100 - off]) {
      if (off + len > data.length) continue;
      t.deepEqual(
        memoryCipher(K1, 0x5000n + BigInt(off), data.subarray(off, off + len)),
        whole.subarray(off, off + len),
        `offset ${off}, length ${len}`,
      );
    }
  }
});

test('memory cipher: same plaintext at different addresses differs; moved ciphertext or another key decrypts to garbage', (t) => {
  const page = randomBytes(4096);
  const a = memoryCipher(K1, 0x10000n, page);
  const b = memoryCipher(K1, 0x11000n, page);
  t.notDeepEqual(a, b);
  const zero = memoryCipher(K1, 0x10000n, Buffer.alloc(64));
  t.notDeepEqual(zero.subarray(0, 16), zero.subarray(16, 32), 'equal blocks within a page differ');
  t.notDeepEqual(memoryCipher(K1, 0x11000n, a), page, 'moved by a page');
  t.notDeepEqual(memoryCipher(K1, 0x10010n, a.subarray(0, 4080)), page.subarray(0, 4080), 'moved by one block');
  t.notDeepEqual(memoryCipher(K2, 0x10000n, a), page, 'another key');
  t.deepEqual(memoryCipher(K1, 0x10000n, a), page);
});

test('memory cipher over many ranges: the same bytes as one memoryCipherInto per range (frames, counter carries, odd addresses, long ranges)', (t) => {
  const buf = randomBytes(3 << 20);
  const ranges: { paddr: bigint; off: number; len: number }[] = [];
  let off = 8;
  const add = (paddr: bigint, len: number, gap = 0): void => {
    ranges.push({ paddr, off, len });
    off += len + gap;
  };
  // Scattered 4 KiB frames, adjacent in the buffer (merged into one piece) and not.
  for (let p = 0; p < 300; p++) add((5n << 40n) + (BigInt((p * 0x0b5ad4e5) & 0xfffffff) << 12n), 4096, p % 7 === 0 ? 16 : 0);
  add((1n << 36n) - 0x400n, 4096); // the counter's low 32 bits wrap inside the range
  add(0x1234_5678n * 16n + 0x80n, 4080); // starts mid-run of 256 counters
  add(0xffff_ffff_ffff_e000n, 4096); // the top of the address space
  add(0x7000n + 3n, 100); // not 16-aligned: a CTR stream of its own
  add(0x9000n, 20); // not a 16 multiple
  add(0x40_0000n, (64 << 10) + 16); // long: one CTR stream
  add(0x50_0000n, 4096, 3); // next range's data is not 8-aligned in the buffer
  add(0x60_0000n, 4096);
  t.true(off <= buf.length);
  const a = Buffer.from(buf);
  const b = Buffer.from(buf);
  for (const r of ranges) memoryCipherInto(K1, r.paddr, a.subarray(r.off, r.off + r.len), a.subarray(r.off, r.off + r.len));
  memoryCipherRangesInPlace(
    K1,
    ranges.map((r) => ({ paddr: r.paddr, bytes: b.subarray(r.off, r.off + r.len) })),
  );
  t.true(a.equals(b));
  t.false(a.equals(buf), 'encrypted');
  t.throws(() => memoryCipherRangesInPlace(K1, [{ paddr: 1n << 64n, bytes: new Uint8Array(16) }]), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => memoryCipherRangesInPlace(K1, [{ paddr: 0n, bytes: 'x' as unknown as Uint8Array }]), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** A firmware whose random answers depend only on the call order (two of them make the same VEK and MNONCE). */
function replayable(): MockFirmware {
  let n = 0;
  const random = (len: number): Uint8Array => {
    const out = Buffer.alloc(len);
    for (let at = 0; at < len; at += 32) createHash('sha256').update(`random ${n} ${at}`).digest().copy(out, at);
    n++;
    return out;
  };
  return ready({ random, chipKey: Buffer.alloc(32, 7) });
}

test('batch: LAUNCH_UPDATE_DATA commands inside it leave the same bytes and the same measurement as one by one; every command answers as it is issued', (t) => {
  const image = randomBytes(64 << 10);
  // 4 KiB frames at scattered addresses, in buffer order; one range twice (it flushes the queue).
  const frames = (m: Buffer): PhysRange[] => {
    const out: PhysRange[] = [];
    for (let p = 0; p < 16; p++)
      out.push(range(0x3_0000_0000n + BigInt(((p * 0x9e37) & 0xffff) << 12), m.subarray(p * 4096, (p + 1) * 4096)));
    out.splice(5, 0, out[3]!);
    return out;
  };
  const results: { bytes: Buffer; measure: Uint8Array | undefined; statuses: number[] }[] = [];
  for (const batched of [false, true]) {
    const fw = replayable();
    const g = launch(fw, 0, { session: false, asid: 300 });
    const m = Buffer.from(image);
    const statuses: number[] = [];
    const issue = (): void => {
      for (const r of frames(m)) statuses.push(fw.launchUpdateData(g.handle, r).status);
      statuses.push(fw.launchUpdateData(g.handle, range(0x8n, m.subarray(0, 16))).status); // INVALID_ADDRESS, nothing queued
      statuses.push(fw.launchUpdateData(0x3ff, range(0x0n, m.subarray(0, 16))).status); // INVALID_GUEST
    };
    if (batched) t.is(fw.batch(issue), undefined);
    else issue();
    results.push({ bytes: m, measure: fw.launchMeasure(g.handle, 48).data, statuses });
  }
  const [one, bulk] = results;
  t.deepEqual(bulk!.statuses, one!.statuses);
  t.deepEqual(one!.statuses.slice(-2), [SEV_RET.INVALID_ADDRESS, SEV_RET.INVALID_GUEST]);
  t.true(bulk!.bytes.equals(one!.bytes), 'the same ciphertext');
  t.false(one!.bytes.equals(image));
  t.deepEqual(bulk!.measure, one!.measure, 'the same launch digest');
});

test('batch: another command inside it sees the queued LAUNCH_UPDATE_DATA work done; a throw still completes it', (t) => {
  const fw = replayable();
  const g = launch(fw, 0, { session: false, asid: 301 });
  const m = randomBytes(8192);
  const plain = Buffer.from(m);
  const out = range(0x9_0000n, new Uint8Array(4096));
  fw.batch(() => {
    t.is(fw.launchUpdateData(g.handle, range(0x1000n, m.subarray(0, 4096))).status, 0);
    t.is(fw.dbgDecrypt(g.handle, range(0x1000n, m.subarray(0, 4096)), out).status, 0);
  });
  t.deepEqual(Buffer.from(out.bytes), plain.subarray(0, 4096), 'DBG_DECRYPT read the encrypted page');
  t.throws(
    () =>
      fw.batch(() => {
        t.is(fw.launchUpdateData(g.handle, range(0x2000n, m.subarray(4096))).status, 0);
        throw new Error('the kernel loop failed');
      }),
    { message: 'the kernel loop failed' },
  );
  t.false(m.subarray(4096).equals(plain.subarray(4096)), 'the page of the command that completed is encrypted');
  t.throws(() => fw.batch(42 as unknown as () => void), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('CiphertextMemory: stores ciphertext (in place when the plaintext is the range), reads plaintext', (t) => {
  const mem = new CiphertextMemory();
  t.true(mem.storesCiphertext);
  const plain = randomBytes(256);
  const r = range(0x7000n, Buffer.from(plain));
  mem.writePrivate(r, K1, r.bytes);
  t.deepEqual(Buffer.from(r.bytes), memoryCipher(K1, 0x7000n, plain));
  t.deepEqual(Buffer.from(mem.readPrivate(r, K1)), plain);
  t.notDeepEqual(Buffer.from(mem.readPrivate(r, K2)), plain);
  t.deepEqual(Buffer.from(mem.hostView(r)), Buffer.from(r.bytes));
  mem.writeShared(r, plain);
  t.deepEqual(Buffer.from(r.bytes), plain);
  t.throws(() => mem.writePrivate(r, K1, plain.subarray(1)), { code: 'ERR_INVALID_ARG_VALUE' });
  t.throws(() => mem.readPrivate({ paddr: 5 as unknown as bigint, bytes: r.bytes }, K1), { code: 'ERR_INVALID_ARG_TYPE' });
});

/** Apply the same operation sequence to the pure and the hybrid controller; they must agree on what the host sees and what guests read. */
test('PlaintextMemory keeps plaintext; its hostView and reads equal the CiphertextMemory for any write sequence', (t) => {
  const size = 3 * 4096;
  const base = 0x200000n;
  const init = randomBytes(size);
  const pureBuf = Buffer.from(init);
  const hyBuf = Buffer.from(init);
  const pure = new CiphertextMemory();
  const hy = new PlaintextMemory();
  t.false(hy.storesCiphertext);
  const sub = (buf: Buffer, off: number, len: number): { paddr: bigint; bytes: Uint8Array } =>
    range(base + BigInt(off), buf.subarray(off, off + len));
  const truth = Buffer.from(init); // what each guest would read back where it wrote
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let step = 0; step < 300; step++) {
    const off = rnd(size - 1);
    const len = 1 + rnd(Math.min(600, size - off));
    const op = rnd(3);
    const key = rnd(2) === 0 ? K1 : K2;
    if (op === 0) {
      const data = randomBytes(len);
      pure.writePrivate(sub(pureBuf, off, len), key, data);
      hy.writePrivate(sub(hyBuf, off, len), key, data);
      data.copy(truth, off);
    } else if (op === 1) {
      const data = randomBytes(len);
      pure.writeShared(sub(pureBuf, off, len), data);
      hy.writeShared(sub(hyBuf, off, len), data);
      data.copy(truth, off);
    } else {
      const a = pure.readPrivate(sub(pureBuf, off, len), key);
      const b = hy.readPrivate(sub(hyBuf, off, len), key);
      if (!Buffer.from(a).equals(Buffer.from(b))) {
        t.fail(`step ${step}: reads differ at ${off}+${len}`);
        return;
      }
    }
    if (!Buffer.from(hy.hostView(range(base, hyBuf))).equals(pureBuf)) {
      t.fail(`step ${step}: host views differ`);
      return;
    }
  }
  t.deepEqual(hyBuf, truth, 'the hybrid memory holds the plaintext of every write');
  t.notDeepEqual(pureBuf, truth);
  // A view at an offset within the store (unaligned range) agrees too.
  t.deepEqual(Buffer.from(hy.hostView(sub(hyBuf, 1000, 777))), pureBuf.subarray(1000, 1777));
});

test('PlaintextMemory: isPrivate by range and by address; forget; stores with equal addresses stay apart', (t) => {
  const hy = new PlaintextMemory();
  const a = Buffer.alloc(8192, 1);
  const b = Buffer.alloc(8192, 2);
  hy.writePrivate(range(0x1000n, a.subarray(0, 4096)), K1, a.subarray(0, 4096));
  t.true(hy.isPrivate(range(0x1000n, a)));
  t.true(hy.isPrivate(range(0x1ff0n, a.subarray(4080))));
  t.false(hy.isPrivate(range(0x2000n, a.subarray(4096))));
  t.false(hy.isPrivate(range(0x1000n, b)), 'same address, other VM');
  t.true(hy.isPrivate(0x1800n));
  t.false(hy.isPrivate(0x2000n));
  t.deepEqual(Buffer.from(hy.hostView(range(0x1000n, b))), b, 'the other store is untouched');
  t.deepEqual(a.subarray(0, 4096), Buffer.alloc(4096, 1), 'plaintext stays');
  t.deepEqual(Buffer.from(hy.hostView(range(0x1000n, a.subarray(0, 4096)))), memoryCipher(K1, 0x1000n, Buffer.alloc(4096, 1)));
  hy.forget(range(0x1800n, a.subarray(0x800, 0x1000)));
  t.false(hy.isPrivate(0x1800n));
  t.true(hy.isPrivate(0x17f0n));
  t.deepEqual(Buffer.from(hy.hostView(range(0x1800n, a.subarray(0x800, 0x1000)))), Buffer.alloc(0x800, 1));
  // Read at another address (moved): garbage, as on hardware.
  t.notDeepEqual(Buffer.from(hy.readPrivate(range(0x9000n, a.subarray(0, 16)), K1)), Buffer.alloc(16, 1));
  t.deepEqual(Buffer.from(hy.readPrivate(range(0x1000n, a.subarray(0, 16)), K1)), Buffer.alloc(16, 1));
});

function twoFirmwares(): { pure: ReturnType<typeof ready>; hybrid: ReturnType<typeof ready>; hy: PlaintextMemory } {
  const vek = randomBytes(16);
  const r1 = scriptedRandom();
  const r2 = scriptedRandom();
  const pure = ready({ random: r1.random, memory: new CiphertextMemory() });
  const hy = new PlaintextMemory();
  const hybrid = ready({ random: r2.random, memory: hy });
  r1.queue(vek);
  r2.queue(vek);
  return { pure, hybrid, hy };
}

test('LAUNCH_UPDATE_DATA: pure mock holds ciphertext (equal pages differ), hybrid holds plaintext with the same host view; DBG_DECRYPT returns the plaintext', (t) => {
  const { pure, hybrid, hy } = twoFirmwares();
  const gp = launch(pure, 0, { session: false, asid: 200 });
  const gh = launch(hybrid, 0, { session: false, asid: 200 });
  const page = randomBytes(4096);
  const image = Buffer.concat([page, page, randomBytes(4096)]);
  const pm = Buffer.from(image);
  const hm = Buffer.from(image);
  t.is(pure.launchUpdateData(gp.handle, range(0x100000n, pm)).status, 0);
  t.is(hybrid.launchUpdateData(gh.handle, range(0x100000n, hm)).status, 0);
  t.notDeepEqual(pm.subarray(0, 4096), page, 'ciphertext');
  t.notDeepEqual(pm.subarray(0, 4096), pm.subarray(4096, 8192), 'equal pages at different addresses');
  t.deepEqual(hm, image, 'the hybrid keeps plaintext for the real CPU');
  t.deepEqual(Buffer.from(hy.hostView(range(0x100000n, hm))), pm, 'what a host would read equals the pure mock');
  for (const [fw, g, m] of [
    [pure, gp, pm],
    [hybrid, gh, hm],
  ] as const) {
    const out = range(0x900000n, new Uint8Array(8192));
    t.is(fw.dbgDecrypt(g.handle, range(0x101000n, m.subarray(4096, 12288)), out).status, 0);
    t.deepEqual(Buffer.from(out.bytes), image.subarray(4096, 12288));
  }
});

test('LAUNCH_UPDATE_DATA checks: INACTIVE, then address alignment, then length', (t) => {
  const fw = ready();
  const g = launch(fw, 0, { session: false, activate: false });
  expectStatus(t, fw.launchUpdateData(g.handle, range(0x1008n, new Uint8Array(20))), SEV_RET.INACTIVE);
  t.is(fw.activate(g.handle, 250).status, 0);
  expectStatus(t, fw.launchUpdateData(g.handle, range(0x1008n, new Uint8Array(20))), SEV_RET.INVALID_ADDRESS);
  expectStatus(t, fw.launchUpdateData(g.handle, range(0x1000n, new Uint8Array(20))), SEV_RET.INVALID_LEN);
  expectStatus(t, fw.launchUpdateData(g.handle, range(0x1000n, new Uint8Array(0))), SEV_RET.INVALID_LEN);
  const bytes = Buffer.alloc(32, 3);
  t.is(fw.launchUpdateData(g.handle, range(0x1000n, bytes)).status, 0);
  t.notDeepEqual(bytes, Buffer.alloc(32, 3));
});

test('DBG_DECRYPT / DBG_ENCRYPT: alignment, length, handle, NODBG, activity, in that order; round trip', (t) => {
  const fw = ready();
  const g = launch(fw, 0, { session: false });
  const nodbg = launch(fw, SEV_POLICY.NODBG, { session: false });
  const idle = launch(fw, 0, { session: false, activate: false });
  const r = (paddr: bigint, len = 32): { paddr: bigint; bytes: Uint8Array } => range(paddr, new Uint8Array(len));
  for (const dbg of [fw.dbgDecrypt.bind(fw), fw.dbgEncrypt.bind(fw)]) {
    expectStatus(t, dbg(999, r(0x1004n), r(0x2000n)), SEV_RET.INVALID_ADDRESS, 'src');
    expectStatus(t, dbg(999, r(0x1000n), r(0x2008n)), SEV_RET.INVALID_ADDRESS, 'dst');
    expectStatus(t, dbg(999, r(0x1000n, 24), r(0x2000n, 24)), SEV_RET.INVALID_LEN);
    expectStatus(t, dbg(999, r(0x1000n), r(0x2000n)), SEV_RET.INVALID_GUEST);
    expectStatus(t, dbg(nodbg.handle, r(0x1000n), r(0x2000n)), SEV_RET.POLICY_FAILURE);
    expectStatus(t, dbg(idle.handle, r(0x1000n), r(0x2000n)), SEV_RET.INACTIVE);
  }
  t.throws(() => fw.dbgDecrypt(g.handle, r(0x1000n, 32), r(0x2000n, 16)), { code: 'ERR_INVALID_ARG_VALUE' });
  const plain = randomBytes(64);
  const priv = range(0x40000n, new Uint8Array(64));
  t.is(fw.dbgEncrypt(g.handle, range(0x3000n, Buffer.from(plain)), priv).status, 0);
  t.notDeepEqual(Buffer.from(priv.bytes), plain);
  // DBG_ENCRYPT of zeros at the same address yields the keystream there: ciphertext ⊕ keystream = plaintext.
  const ks = range(0x40000n, new Uint8Array(64));
  t.is(fw.dbgEncrypt(g.handle, range(0x6000n, new Uint8Array(64)), ks).status, 0);
  t.deepEqual(Buffer.from(priv.bytes.map((x, i) => x ^ ks.bytes[i]!)), plain);
  const back = range(0x5000n, new Uint8Array(64));
  t.is(fw.dbgDecrypt(g.handle, priv, back).status, 0);
  t.deepEqual(Buffer.from(back.bytes), plain);
});

test("key sharing: guests launched with a shared VEK read each other's memory; other guests read garbage", (t) => {
  const fw = ready();
  const a = launch(fw, 0, { session: false });
  const shared = fw.launchStart({ handle: a.handle, policy: 0, dhCert: null, session: null });
  t.is(shared.status, 0);
  t.is(fw.activate(shared.handle, 300).status, 0);
  const other = launch(fw, 0, { session: false });
  const plain = randomBytes(48);
  const mem = range(0x8000n, Buffer.from(plain));
  t.is(fw.launchUpdateData(a.handle, mem).status, 0);
  const read = (h: number): Buffer => {
    const out = range(0x20000n, new Uint8Array(48));
    if (fw.dbgDecrypt(h, mem, out).status !== 0) throw new Error('DBG_DECRYPT failed');
    return Buffer.from(out.bytes);
  };
  t.deepEqual(read(a.handle), plain);
  t.deepEqual(read(shared.handle), plain);
  t.notDeepEqual(read(other.handle), plain);
});

test("the memory controller is the firmware's only path to private memory (a custom controller sees every access)", (t) => {
  const calls: string[] = [];
  const inner = new CiphertextMemory();
  const spy: MemoryController = {
    storesCiphertext: true,
    writePrivate: (r, k, p) => {
      calls.push(`w${r.paddr.toString(16)}+${r.bytes.length}`);
      inner.writePrivate(r, k, p);
    },
    readPrivate: (r, k) => {
      calls.push(`r${r.paddr.toString(16)}+${r.bytes.length}`);
      return inner.readPrivate(r, k);
    },
  };
  const fw = ready({ memory: spy });
  const g = launch(fw, 0, { session: false });
  fw.launchUpdateData(g.handle, range(0x1000n, new Uint8Array(64)));
  const out = range(0x9000n, new Uint8Array(32));
  fw.dbgDecrypt(g.handle, range(0x1010n, new Uint8Array(32)), out);
  fw.dbgEncrypt(g.handle, out, range(0x1020n, new Uint8Array(32)));
  t.deepEqual(calls, ['w1000+64', 'r1010+32', 'w1020+32']);
});

/**
 * The native shim's compiled-in allowlist and struct layouts agree with the TypeScript codecs
 * (which test/uapi-layout checks against the kernel headers): same requests, numbers, argument
 * kinds, struct sizes, and the same pointer fields paired with the same length fields.
 */
import { loadAddon } from '../../../lib/backends/native/addon.js';
import { IOCTLS } from '../../../lib/uapi/ioctls.js';
import { structs } from '../../../lib/uapi/index.js';
import type { AnyStructCodec } from '../../../lib/uapi/codec.js';
import { SevCommandTable } from '../../../lib/uapi/sev-command-table.js';
import { flatPointers } from '../../../lib/backends/mock/syscall/marshal.js';
import { hwTest, nativeAddon } from '../../helpers/hw.js';

const req = nativeAddon();

hwTest(req, 'every allowlisted request has the same number, argument kind and fd kinds in C++ and TS', (t) => {
  const native = new Map(
    loadAddon()
      .describe()
      .requests.map((r) => [r.name, r]),
  );
  t.is(native.size, IOCTLS.length);
  for (const d of IOCTLS) {
    const n = native.get(d.name);
    t.truthy(n, `${d.name} missing from the native allowlist`);
    if (!n) continue;
    t.is(n.request, d.request, `${d.name} number`);
    t.is(n.arg, d.arg, `${d.name} argument kind`);
    t.is(n.returnsFd, d.returnsFd === true, `${d.name} returnsFd`);
    t.deepEqual([...n.fds].sort(), [...d.fds].sort(), `${d.name} fd kinds`);
    if (d.struct) t.is(n.struct, d.struct.name, `${d.name} struct`);
    t.is(n.fdOut, d.fdOut ?? -1, `${d.name} fd written into the struct`);
  }
});

hwTest(req, 'every native layout matches its codec: size, pointer offsets, paired lengths, retained and fixed sizes', (t) => {
  const layouts = loadAddon().describe().layouts;
  const codecs = structs as unknown as Record<string, AnyStructCodec>;
  for (const l of layouts) {
    const c = codecs[l.name];
    t.truthy(c, `no codec for ${l.name}`);
    if (!c) continue;
    t.is(l.size, c.size, `${l.name} size`);
    // Pointers of nested structs (kvm_msr_filter.ranges[i].bitmap) are flattened, as the shim lists them.
    const flat = flatPointers(c);
    t.is(l.pointers.length, flat.length, `${l.name} pointer count`);
    for (const p of l.pointers) {
      const fp = flat.find((x) => x.name === p.name);
      t.truthy(fp, `${l.name}.${p.name} is not a ptr in the codec`);
      const f = fp && { ...fp.info, offset: fp.offset };
      if (!f?.pointer || !fp) continue;
      t.is(p.offset, f.offset, `${l.name}.${p.name} offset`);
      t.is(p.lenOffset, f.pointer.len ? fp.baseOffset + f.pointer.len.offset : -1, `${l.name}.${p.name} paired length`);
      t.is(p.lenBits, f.pointer.lenBits === true, `${l.name}.${p.name} length counts bits`);
      t.is(
        p.slotOffset,
        f.pointer.memslotBitmap ? fp.baseOffset + f.pointer.memslotBitmap.offset : -1,
        `${l.name}.${p.name} memslot bitmap`,
      );
      if (f.pointer.len) t.is(p.lenSize, f.pointer.len.size, `${l.name}.${p.name} length size`);
      t.is(p.fixedLen, f.pointer.fixedLen ?? 0, `${l.name}.${p.name} fixed length`);
      t.is(p.retained, f.pointer.retained === true, `${l.name}.${p.name} retained`);
      t.is(p.selected, f.pointer.selectBy !== undefined, `${l.name}.${p.name} selected by a command id`);
    }
  }
});

hwTest(
  req,
  'kvm_sev_cmd.data: the shim picks the same struct per command id as the TypeScript tables, upstream and with local ids',
  (t) => {
    const tables = [
      SevCommandTable.UPSTREAM,
      SevCommandTable.LOCAL_MIGRATION_2021,
      SevCommandTable.withLocalMigration({ send: 200, receive: 201 }),
    ];
    for (const table of tables) {
      const lm = table.localMigration;
      const native = loadAddon().describeSevCommands(lm?.LOCAL_SEND ?? 0, lm?.LOCAL_RECEIVE ?? 0);
      t.is(native.length, 256);
      native.forEach((name, id) => t.is(name, table.struct(id)?.name ?? null, `${table.name}: id ${id}`));
    }
  },
);

/**
 * The KVM layer covers the allowlist, and the allowlist covers the uapi: every ioctl request
 * lib/uapi/ioctls.ts defines is either allowlisted (IOCTLS, and so in the native shim's table) or
 * listed in REFUSED_IOCTLS with a reason; every allowlisted request is issued by a typed method in
 * lib/kvm (or lib/sev for the SEV commands), whose doc comment names it.
 */
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as ioctls from '../../lib/uapi/ioctls.js';
import { IOCTLS, REFUSED_IOCTLS } from '../../lib/uapi/ioctls.js';
import { loadAddon } from '../../lib/backends/native/addon.js';
import { hwTest, nativeAddon } from '../helpers/hw.js';

/** Exported request numbers of ioctls.ts (KVM_* and SEV_* constants). */
function definedRequests(): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(ioctls)) if (/^(KVM|SEV)_[A-Z0-9_]+$/.test(k) && typeof v === 'number') out.set(k, v);
  return out;
}

function sources(dir: string): string {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

test('every request ioctls.ts defines is allowlisted or refused with a reason, never both', (t) => {
  const defined = definedRequests();
  t.true(defined.size >= IOCTLS.length);
  const allowed = new Set(IOCTLS.map((d) => d.name));
  const refused = new Map(REFUSED_IOCTLS.map((d) => [d.name, d]));
  for (const [name, request] of defined) {
    t.true(allowed.has(name) !== refused.has(name), `${name}: allowlisted xor refused`);
    const r = refused.get(name);
    if (r) {
      t.is(r.request, request, `${name}: the refused entry has the request's number`);
      t.true(r.reason.length > 20, `${name}: a reason`);
    }
  }
  for (const d of IOCTLS) t.is(defined.get(d.name), d.request, `${d.name} is exported with its number`);
  for (const d of REFUSED_IOCTLS) t.true(defined.has(d.name), `${d.name} is exported`);
});

test('every allowlisted request is issued by a typed method whose doc comment names it', (t) => {
  const src = sources('lib/kvm') + sources('lib/sev');
  for (const d of IOCTLS) {
    if (d.name === 'KVM_RUN') continue; // the runner's KVM_RUN: Vcpu.run()/runSync() through the backend's VcpuRunHandle
    const used = new RegExp(`\\b(ioc\\.)?${d.name}\\b(?![A-Z0-9_])`).test(src.replace(/\/\*\*[\s\S]*?\*\//g, ''));
    t.true(used, `${d.name} is issued in lib/kvm or lib/sev`);
    t.true(new RegExp(`\\b${d.name}\\b`).test(src.match(/\/\*\*[\s\S]*?\*\//g)!.join('\n')), `${d.name} is named in a doc comment`);
  }
  t.true(/run\(\): Promise<VcpuExit>/.test(readFileSync('lib/kvm/vcpu.ts', 'utf8')));
});

hwTest(nativeAddon(), 'the native shim allows exactly IOCTLS and none of REFUSED_IOCTLS', (t) => {
  const native = loadAddon().describe().requests;
  t.deepEqual(native.map((r) => r.name).sort(), IOCTLS.map((d) => d.name).sort());
  const numbers = new Set(native.map((r) => r.request));
  for (const d of REFUSED_IOCTLS) t.false(numbers.has(d.request), `${d.name} is refused natively`);
});

/**
 * The addon loader: node-gyp-build's order (build/Release, build/Debug, then a prebuild in
 * prebuildify's layout prebuilds/<platform>-<arch>/), KVM_SEV_ADDON over all of it, and an error that
 * says what was looked for when nothing fits. Each case runs in a child process, because the loader
 * caches its answer per process; node-gyp-build's KVM_SEV_PREBUILD points the child at a scratch
 * folder in place of the package root.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addonFile, loadAddon } from '../../../lib/backends/native/addon.js';
import { hwTest, nativeAddon } from '../../helpers/hw.js';

const addonModule = new URL('../../../lib/backends/native/addon.js', import.meta.url).href;

interface Outcome {
  file?: string;
  abi?: number;
  code?: string;
  message?: string;
}

/** Loads the addon in a child with `env` (KVM_SEV_ADDON and KVM_SEV_PREBUILD start unset). */
function loadInChild(env: Record<string, string>): Outcome {
  const script = `
    const { loadAddon, addonFile } = await import(${JSON.stringify(addonModule)});
    try { const a = loadAddon(); process.stdout.write(JSON.stringify({ file: addonFile(), abi: a.abiVersion })); }
    catch (e) { process.stdout.write(JSON.stringify({ code: e.code, message: e.message })); }`;
  const base = { ...process.env };
  delete base['KVM_SEV_ADDON'];
  delete base['KVM_SEV_PREBUILD'];
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...base, ...env } });
  return JSON.parse(out) as Outcome;
}

function scratch(t: { teardown(f: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-loader-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The addon this process loaded: the file the children get copies of. */
function builtAddon(): string {
  loadAddon();
  const f = addonFile();
  if (!f) throw new Error('addonFile() is unset after a successful load');
  return f;
}

hwTest(nativeAddon(), "a prebuild in prebuildify's layout is what node-gyp-build loads when there is no local build", (t) => {
  const dir = scratch(t);
  const file = join(dir, 'prebuilds', 'linux-x64', 'kvm-sev.glibc.node');
  mkdirSync(join(dir, 'prebuilds', 'linux-x64'), { recursive: true });
  copyFileSync(builtAddon(), file);
  // A prebuild for another libc, and one for another architecture, are passed over.
  writeFileSync(join(dir, 'prebuilds', 'linux-x64', 'kvm-sev.musl.node'), 'not an ELF file');
  mkdirSync(join(dir, 'prebuilds', 'linux-arm64'));
  writeFileSync(join(dir, 'prebuilds', 'linux-arm64', 'kvm-sev.glibc.node'), 'not an ELF file');
  const r = loadInChild({ KVM_SEV_PREBUILD: dir });
  t.is(r.file, file, r.message);
  t.is(typeof r.abi, 'number');
});

hwTest(nativeAddon(), 'a local build (build/Release) comes before the prebuild', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'prebuilds', 'linux-x64'), { recursive: true });
  writeFileSync(join(dir, 'prebuilds', 'linux-x64', 'kvm-sev.glibc.node'), 'not an ELF file');
  mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
  copyFileSync(builtAddon(), join(dir, 'build', 'Release', 'kvm_sev.node'));
  const r = loadInChild({ KVM_SEV_PREBUILD: dir });
  t.is(r.file, join(dir, 'build', 'Release', 'kvm_sev.node'), r.message);
});

hwTest(nativeAddon(), 'KVM_SEV_ADDON overrides the local build and the prebuilds', (t) => {
  const dir = scratch(t);
  const file = join(dir, 'my-build.node');
  copyFileSync(builtAddon(), file);
  // The prebuild folder holds only a file that would fail to load: KVM_SEV_ADDON must win.
  mkdirSync(join(dir, 'prebuilds', 'linux-x64'), { recursive: true });
  writeFileSync(join(dir, 'prebuilds', 'linux-x64', 'kvm-sev.glibc.node'), 'not an ELF file');
  const r = loadInChild({ KVM_SEV_ADDON: file, KVM_SEV_PREBUILD: dir });
  t.is(r.file, file, r.message);
});

test('KVM_SEV_ADDON naming a missing file: ERR_KVM_SEV_NATIVE_UNAVAILABLE naming it', (t) => {
  const missing = join(scratch(t), 'nope', 'kvm_sev.node');
  const r = loadInChild({ KVM_SEV_ADDON: missing });
  t.is(r.code, 'ERR_KVM_SEV_NATIVE_UNAVAILABLE');
  t.true(r.message?.includes(`${missing} (KVM_SEV_ADDON): not found`), r.message);
});

test('no build and no prebuild for this host: the error says what node-gyp-build looked for and how to build', (t) => {
  const dir = scratch(t);
  mkdirSync(join(dir, 'prebuilds', 'linux-arm64'), { recursive: true });
  writeFileSync(join(dir, 'prebuilds', 'linux-arm64', 'kvm-sev.glibc.node'), 'not an ELF file');
  const r = loadInChild({ KVM_SEV_PREBUILD: dir });
  t.is(r.code, 'ERR_KVM_SEV_NATIVE_UNAVAILABLE');
  if (process.platform === 'linux' && process.arch === 'x64') {
    t.regex(r.message ?? '', /No native build was found for platform=linux arch=x64 .*libc=glibc/);
    t.regex(r.message ?? '', /npm rebuild kvm-sev --build-from-source/);
  } else {
    t.regex(r.message ?? '', /needs x86-64 Linux .* use the mock backend/);
  }
});

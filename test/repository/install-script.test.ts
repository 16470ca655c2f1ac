/**
 * scripts/install.cjs, the package's install script, run as npm runs it (npm_command, npm's
 * node-gyp in npm_config_node_gyp) on a scratch copy of the package, with a PATH that has no C++
 * compiler: a rebuild the user asked for fails with exit status 1 and says why; a plain install
 * falls back to the mock with a warning and exit status 0; a prebuild that loads is used without
 * compiling, unless a build from source is asked for.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { addonFile, loadAddon, packageRoot } from '../../lib/backends/native/addon.js';
import { hwTest, nativeAddon, type Requirement } from '../helpers/hw.js';

const root = packageRoot();

/** npm's node-gyp, as npm hands it to install scripts. */
function nodeGyp(): string | undefined {
  const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return [process.env['npm_config_node_gyp'], bundled].find((p): p is string => !!p && existsSync(p));
}
const gyp = nodeGyp();
const withGyp: Requirement = gyp ? { ok: true, reason: '' } : { ok: false, reason: "npm's node-gyp not found beside node" };
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';
const sourceBuild: Requirement = !onLinuxX64 ? { ok: false, reason: 'the addon builds on x86-64 Linux only' } : withGyp;
const withAddon: Requirement = !nativeAddon().ok ? nativeAddon() : sourceBuild;

/** A C or C++ compiler's name: gcc, g++-12, cc, c++, clang++, x86_64-linux-gnu-g++, … */
const COMPILER = /(^|-)(gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(-[\d.]+)?$/;

/** A scratch copy of what install.cjs needs: the package's install script, binding.gyp, native/, node_modules. */
function scratchPackage(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'scripts'));
  copyFileSync(join(root, 'scripts', 'install.cjs'), join(dir, 'scripts', 'install.cjs'));
  for (const f of ['package.json', 'binding.gyp']) copyFileSync(join(root, f), join(dir, f));
  cpSync(join(root, 'native'), join(dir, 'native'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

/** A PATH of one folder: only node, or every command of this PATH but the C and C++ compilers. */
function strippedPath(t: ExecutionContext, keep: 'node' | 'all-but-compilers'): string {
  const bin = mkdtempSync(join(tmpdir(), 'kvm-sev-path-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, join(bin, 'node'));
  if (keep === 'all-but-compilers') {
    for (const d of (process.env['PATH'] ?? '').split(delimiter)) {
      if (!d || !existsSync(d)) continue;
      for (const name of readdirSync(d)) {
        if (COMPILER.test(name) || existsSync(join(bin, name))) continue;
        symlinkSync(join(d, name), join(bin, name));
      }
    }
  }
  return bin;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the scratch package's install script as `npm <command>` would, with `path` as PATH. */
function install(
  t: ExecutionContext,
  dir: string,
  path: string,
  command: 'install' | 'rebuild',
  extra: Record<string, string> = {},
): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Nothing of this run's own npm, build or kvm-sev settings leaks into the child.
    if (v === undefined || /^(npm_|KVM_SEV_|PREBUILDS_ONLY$|CC$|CXX$|LINK$)/.test(k)) continue;
    env[k] = v;
  }
  Object.assign(env, { PATH: path, npm_command: command, npm_config_node_gyp: gyp ?? '' }, extra);
  // Asynchronous, so that the cases (each a node-gyp run) overlap.
  const child = spawn(process.execPath, [join(dir, 'scripts', 'install.cjs')], { cwd: dir, env, timeout: 120_000 });
  t.teardown(() => child.kill()); // a no-op once it has exited
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Puts a copy of the addon this process loaded where the npm package ships its prebuild. */
function addPrebuild(dir: string): string {
  loadAddon();
  const rel = join('prebuilds', 'linux-x64', 'kvm-sev.glibc.node');
  mkdirSync(join(dir, 'prebuilds', 'linux-x64'), { recursive: true });
  copyFileSync(addonFile()!, join(dir, rel));
  return rel;
}

hwTest(sourceBuild, '`npm rebuild` with no C++ compiler on PATH: exit status 1, says the build failed and what is missing', async (t) => {
  const dir = scratchPackage(t);
  const r = await install(t, dir, strippedPath(t, 'all-but-compilers'), 'rebuild');
  t.is(r.status, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /kvm-sev: ERROR: native addon not built: node-gyp rebuild exited with \d+/);
  t.regex(r.stderr, /g\+\+: (command not found|not found|No such file or directory)/, 'the build got as far as the compiler');
  t.regex(r.stderr, /Not found on PATH: g\+\+ or c\+\+ or clang\+\+\./);
  t.regex(r.stderr, /Failing because `npm rebuild` asked for a build\./);
  t.false(existsSync(join(dir, 'build', 'Release', 'kvm_sev.node')));
  t.notRegex(r.stdout, /compiled/);
});

hwTest(sourceBuild, '`npm rebuild` with only node on PATH (no python3, make or compiler): exit status 1, naming all three', async (t) => {
  const r = await install(t, scratchPackage(t), strippedPath(t, 'node'), 'rebuild');
  t.is(r.status, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /Not found on PATH: python3 or python, make, g\+\+ or c\+\+ or clang\+\+\./);
});

hwTest(sourceBuild, '`npm install` with no compiler and no prebuild: exit status 0, a warning that only the mock will work', async (t) => {
  const r = await install(t, scratchPackage(t), strippedPath(t, 'all-but-compilers'), 'install');
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(
    r.stderr,
    /kvm-sev: WARNING: native addon not built \(node-gyp rebuild exited with \d+.*no prebuilt addon fits: No native build was found/,
  );
  t.regex(r.stderr, /only the mock backend will work/);
  t.regex(r.stderr, /not found on PATH: g\+\+ or c\+\+ or clang\+\+/);
});

hwTest(sourceBuild, '`npm install` with KVM_SEV_REQUIRE_NATIVE=1 and no compiler: exit status 1', async (t) => {
  const r = await install(t, scratchPackage(t), strippedPath(t, 'all-but-compilers'), 'install', { KVM_SEV_REQUIRE_NATIVE: '1' });
  t.is(r.status, 1, r.stdout + r.stderr);
  t.regex(r.stderr, /Failing because KVM_SEV_REQUIRE_NATIVE=1\./);
});

hwTest(withAddon, '`npm rebuild` with a prebuild that loads and no compiler: exit status 0, says the prebuild is used', async (t) => {
  const dir = scratchPackage(t);
  const rel = addPrebuild(dir);
  const r = await install(t, dir, strippedPath(t, 'node'), 'rebuild');
  t.is(r.status, 0, r.stdout + r.stderr);
  t.is(
    r.stdout,
    `kvm-sev: using the prebuilt addon ${rel} (nothing compiled); to compile it instead: npm rebuild kvm-sev --build-from-source\n`,
  );
  t.false(existsSync(join(dir, 'build')));
});

hwTest(
  withAddon,
  '`npm rebuild --build-from-source` (or KVM_SEV_BUILD_FROM_SOURCE=1) with no compiler fails even with a prebuild',
  async (t) => {
    const dir = scratchPackage(t);
    addPrebuild(dir);
    const path = strippedPath(t, 'all-but-compilers');
    const asks: Record<string, string>[] = [{ npm_config_build_from_source: 'true' }, { KVM_SEV_BUILD_FROM_SOURCE: '1' }];
    for (const extra of asks) {
      const r = await install(t, dir, path, 'rebuild', extra);
      t.is(r.status, 1, r.stdout + r.stderr);
      t.regex(r.stderr, /Failing because a build from source was asked for\./);
    }
  },
);

hwTest(sourceBuild, 'a prebuild that does not load is passed over, and the message says why', async (t) => {
  const dir = scratchPackage(t);
  mkdirSync(join(dir, 'prebuilds', 'linux-x64'), { recursive: true });
  writeFileSync(join(dir, 'prebuilds', 'linux-x64', 'kvm-sev.glibc.node'), 'not an ELF file');
  const r = await install(t, dir, strippedPath(t, 'all-but-compilers'), 'install');
  t.is(r.status, 0, r.stdout + r.stderr);
  t.regex(r.stdout, /no prebuilt addon fits: prebuilds\/linux-x64\/kvm-sev\.glibc\.node does not load here: .+kvm-sev\.glibc\.node: /);
});

test('package.json runs the script at install, builds the prebuilds at pack time (and removes them after), and ships them', (t) => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
    files: string[];
    dependencies: Record<string, string>;
  };
  t.is(pkg.scripts['install'], 'node scripts/install.cjs');
  t.is(pkg.scripts['prepack'], 'node scripts/prebuild.cjs');
  t.is(pkg.scripts['postpack'], 'node scripts/prebuild.cjs --clean');
  t.true(pkg.files.includes('prebuilds/'));
  t.truthy(pkg.dependencies['node-gyp-build'], 'node-gyp-build loads the addon at run time');
});

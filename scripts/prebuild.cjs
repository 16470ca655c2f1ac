#!/usr/bin/env node
// Builds the prebuilt N-API addon the npm package ships (run by `npm pack` / `npm publish` as
// `prepack`), in prebuildify's layout, which node-gyp-build loads at run time:
//   prebuilds/linux-x64/kvm-sev.glibc.node
// One binary serves every Node version: the addon uses only N-API (NAPI_VERSION=8).
// Only linux-x64: the addon drives the x86 KVM API (kvm_regs, kvm_sregs, kvm_lapic_state,
// kvm_debugregs, kvm_xcrs, MSRs) and AMD SEV, which exist only on x86-64; arm64's <linux/kvm.h> has
// none of them, so an arm64 build does not compile, cross or native.
// prebuilds/ is a build output: git does not track it, and `postpack` removes it after packing; a git
// clone compiles at install instead.
// The build runs in a scratch copy of the sources so that it leaves the checkout's build/ alone.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const out = path.join(root, 'prebuilds');

// `--clean` (postpack): remove them again, so that a checkout never keeps binaries of older sources,
// which its next install would take for a fitting prebuild.
if (process.argv.includes('--clean')) {
  fs.rmSync(out, { recursive: true, force: true });
  process.exit(0);
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.warn(`kvm-sev prebuild: skipped on ${process.platform}-${process.arch}: the prebuilt addon is built on linux-x64.`);
  process.exit(0);
}

/** npm's node-gyp: the one npm hands to scripts, else the one installed beside node, else PATH's. */
function findNodeGyp() {
  const bundled = path.join(
    path.dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  for (const p of [process.env.npm_config_node_gyp, bundled]) if (p && fs.existsSync(p)) return p;
  return 'node-gyp';
}

fs.rmSync(out, { recursive: true, force: true });
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'kvm-sev-prebuild-'));
try {
  fs.copyFileSync(path.join(root, 'binding.gyp'), path.join(stage, 'binding.gyp'));
  fs.copyFileSync(path.join(root, 'package.json'), path.join(stage, 'package.json'));
  fs.cpSync(path.join(root, 'native'), path.join(stage, 'native'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(stage, 'node_modules'));

  const env = { ...process.env };
  // The system's Node headers, when present, so the build needs no download.
  if (!env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) env.npm_config_nodedir = '/usr';
  const prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
  const args = [prebuildify, '--napi', '--strip', '--tag-libc', '--name', 'kvm-sev', '-t', process.versions.node, '--arch', 'x64'];
  args.push('--node-gyp', findNodeGyp(), '--cwd', stage, '--out', root);
  console.log('kvm-sev prebuild: linux-x64');
  const r = spawnSync(process.execPath, args, { env, stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`kvm-sev prebuild: the linux-x64 build failed (exit ${r.status ?? r.signal})`);
} finally {
  fs.rmSync(stage, { recursive: true, force: true });
}

// The file must be where node-gyp-build looks, and load as it will load it.
const dir = path.join(out, 'linux-x64');
const files = fs.readdirSync(dir).filter((f) => f.endsWith('.node'));
if (files.length !== 1) throw new Error(`expected one .node file in ${dir}, found ${files.join(', ') || 'none'}`);
const file = path.join(dir, files[0]);
const probe = `const a = require(${JSON.stringify(file)}); if (typeof a.abiVersion !== 'number') process.exit(3)`;
if (spawnSync(process.execPath, ['-e', probe], { stdio: 'inherit' }).status !== 0) throw new Error(`${file} does not load`);
console.log(`kvm-sev prebuild: ${path.relative(root, file)} (${fs.statSync(file).size} bytes)`);

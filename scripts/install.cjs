#!/usr/bin/env node
// The install script: use a prebuilt addon when one fits this host, else compile from source.
//
// The npm package ships prebuilt N-API binaries in prebuilds/<platform>-<arch>/ (scripts/prebuild.cjs,
// run by `npm pack`); a git clone has none and compiles. Outcomes:
//   - a prebuild loads here, and no source build was asked for: use it, exit 0;
//   - otherwise compile with node-gyp; success: exit 0;
//   - the compile fails (or cannot start): if the user asked for a build (`npm rebuild`,
//     `--build-from-source`, KVM_SEV_BUILD_FROM_SOURCE=1) or KVM_SEV_REQUIRE_NATIVE=1, exit 1 with the
//     reason, so npm does not report success; on a plain install, warn and exit 0: the package still
//     loads and the mock backend works (native calls then explain what is missing).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const env = process.env;
const required = env.KVM_SEV_REQUIRE_NATIVE === '1';
// npm sets npm_config_build_from_source for `--build-from-source`, and npm_command for the command run.
const fromSource = env.npm_config_build_from_source === 'true' || env.KVM_SEV_BUILD_FROM_SOURCE === '1';
const rebuild = env.npm_command === 'rebuild';
const asked = fromSource || rebuild;

const NEEDS = 'a source build needs x86-64 Linux with python3, make and a C++17 compiler (apt-get install python3 make g++)';

function onPath(exe) {
  if (path.isAbsolute(exe)) return fs.existsSync(exe);
  return (env.PATH || '').split(path.delimiter).some((d) => d && fs.existsSync(path.join(d, exe)));
}

/** The build tools missing from PATH, to name in the message (node-gyp's own error is long). */
function missingTools() {
  const compiler = env.CXX ? [env.CXX.split(' ')[0]] : ['g++', 'c++', 'clang++'];
  const tools = [['python3', 'python'], ['make'], compiler];
  return tools.filter((alts) => !alts.some(onPath)).map((alts) => alts.join(' or '));
}

function fail(reason) {
  const why = required ? 'KVM_SEV_REQUIRE_NATIVE=1' : fromSource ? 'a build from source was asked for' : '`npm rebuild` asked for a build';
  const missing = missingTools();
  const tools = missing.length ? ` Not found on PATH: ${missing.join(', ')}.` : '';
  console.error(`kvm-sev: ERROR: native addon not built: ${reason}.\n  ${NEEDS}.${tools}\n  Failing because ${why}.`);
  process.exit(1);
}

function fallBack(reason) {
  if (required || asked) fail(reason);
  const missing = missingTools();
  const tools = missing.length ? ` (not found on PATH: ${missing.join(', ')})` : '';
  console.warn(
    `kvm-sev: WARNING: native addon not built (${reason}); only the mock backend will work.\n` +
      `  ${NEEDS}${tools}; then run \`npm rebuild kvm-sev --build-from-source\`.`,
  );
  process.exit(0);
}

/** The prebuild node-gyp-build would pick for this host (ignoring build/), if it loads here. */
function fittingPrebuild() {
  let file;
  try {
    // PREBUILDS_ONLY makes node-gyp-build skip build/Release: a stale local build must not pass
    // for a prebuild. node-gyp-build reads it when first loaded, and this process loads it only here.
    env.PREBUILDS_ONLY = '1';
    file = require('node-gyp-build').path(root);
  } catch (e) {
    return { file: undefined, why: String(e.message).split('\n')[0] };
  } finally {
    delete env.PREBUILDS_ONLY;
  }
  try {
    const addon = require(file);
    if (typeof addon.abiVersion !== 'number') return { file: undefined, why: `${file} is not kvm-sev's addon` };
    return { file, why: '' };
  } catch (e) {
    // e.g. a glibc older than the one the prebuild was linked against.
    return { file: undefined, why: `${path.relative(root, file)} does not load here: ${String(e.message).split('\n')[0]}` };
  }
}

if (env.KVM_SEV_SKIP_NATIVE === '1') {
  if (required) fail('KVM_SEV_SKIP_NATIVE=1 is set');
  console.warn('kvm-sev: KVM_SEV_SKIP_NATIVE=1: no prebuild checked, nothing compiled; without a prebuild only the mock backend works.');
  process.exit(0);
}

// The addon drives the x86 KVM API and AMD SEV, which exist only on x86-64 Linux.
if (process.platform !== 'linux' || process.arch !== 'x64') {
  const where = `${process.platform}-${process.arch}`;
  if (required || fromSource) fail(`the native addon is for linux-x64 (x86 KVM and AMD SEV), not ${where}`);
  console.warn(`kvm-sev: no native addon on ${where} (it drives x86-64 KVM and AMD SEV); the mock backend works.`);
  process.exit(0);
}

let noPrebuild = 'a build from source was asked for';
if (!fromSource) {
  const pre = fittingPrebuild();
  if (pre.file) {
    console.log(
      `kvm-sev: using the prebuilt addon ${path.relative(root, pre.file)} (nothing compiled); ` +
        'to compile it instead: npm rebuild kvm-sev --build-from-source',
    );
    process.exit(0);
  }
  noPrebuild = `no prebuilt addon fits: ${pre.why}`;
  console.log(`kvm-sev: ${noPrebuild}; compiling from source.`);
}

// npm hands its bundled node-gyp to lifecycle scripts; fall back to one on PATH.
const gypJs = env.npm_config_node_gyp;
const cmd = gypJs && fs.existsSync(gypJs) ? process.execPath : 'node-gyp';
const args = gypJs && fs.existsSync(gypJs) ? [gypJs, 'rebuild'] : ['rebuild'];
// Use the system's Node headers when present, so the build needs no download.
if (!env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) {
  args.push('--nodedir=/usr');
}
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
if (r.error) fallBack(`could not run node-gyp: ${r.error.message}; ${noPrebuild}`);
if (r.status !== 0) fallBack(`node-gyp rebuild exited with ${r.status ?? r.signal}, see its output above; ${noPrebuild}`);
console.log('kvm-sev: native addon compiled: build/Release/kvm_sev.node');

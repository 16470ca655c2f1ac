#!/usr/bin/env node
// Builds the native addon with node-gyp on Linux. It never fails the install: without the addon
// the package still loads and the mock backend works; native calls then explain what is missing.
// KVM_SEV_REQUIRE_NATIVE=1 turns a build failure into an install failure (for CI on Linux hosts).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const required = process.env.KVM_SEV_REQUIRE_NATIVE === '1';

function skip(reason) {
  const msg =
    `kvm-sev: native addon not built (${reason}). The mock backend works; ` +
    'native /dev/kvm and /dev/sev access needs Linux with python3, make and a C++17 compiler ' +
    '(then run `npm rebuild kvm-sev`).';
  if (required) {
    console.error(msg);
    process.exit(1);
  }
  console.warn(msg);
  process.exit(0);
}

if (process.platform !== 'linux') skip(`platform ${process.platform} has no /dev/kvm`);
if (process.env.KVM_SEV_SKIP_NATIVE === '1') skip('KVM_SEV_SKIP_NATIVE=1');

// npm hands its bundled node-gyp to lifecycle scripts; fall back to one on PATH.
const gypJs = process.env.npm_config_node_gyp;
const cmd = gypJs && fs.existsSync(gypJs) ? process.execPath : 'node-gyp';
const args = gypJs && fs.existsSync(gypJs) ? [gypJs, 'rebuild'] : ['rebuild'];
// Use the system's Node headers when present, so the build needs no download.
if (!process.env.npm_config_nodedir && fs.existsSync('/usr/include/node/node_api.h')) {
  args.push('--nodedir=/usr');
}
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
if (r.error) skip(`could not run node-gyp: ${r.error.message}`);
if (r.status !== 0) skip(`node-gyp exited with ${r.status}`);

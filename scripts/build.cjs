#!/usr/bin/env node
// Compiles the TypeScript and marks the CLI executable (tsc writes files without the x bit, and
// `npx kvm-sev` runs the bin file directly). Plain Node, so it works where there is no chmod(1).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) process.exit(r.status ?? 1);
fs.chmodSync(path.join(root, 'dist', 'lib', 'app', 'cli', 'main.js'), 0o755);

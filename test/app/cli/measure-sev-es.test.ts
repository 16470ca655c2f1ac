/**
 * `kvm-sev measure` for an SEV-ES launch of QEMU + OVMF, through the built CLI: the VMSAs come from
 * the OVMF file, --vcpus and the CPU flags, and the result is the library's.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { computeLaunchMeasurement, expectedLaunchDigest } from '../../../lib/owner/index.js';
import { HASHES, RESET_BLOCK, fullImage, le32, ovmf, FW_SIZE, AP_RESET } from '../../helpers/ovmf-image.js';

const root = fileURLToPath(new URL('../../../..', import.meta.url));
const cli = join(root, 'dist/lib/app/cli/main.js');
const run = (...args: string[]) =>
  spawnSync(process.execPath, [cli, 'measure', ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

const FW = { apiMajor: 1, apiMinor: 55, build: 21 };
const MNONCE = '00112233445566778899aabbccddeeff';
const TIK = '0f'.repeat(16);
const common = ['--api', '1.55', '--build', '21', '--policy', '5', '--mnonce', MNONCE, '--tik', TIK, '--json'];

test('measure --vcpus builds the VMSAs from the OVMF: the same value as the library, whichever way the CPU is named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-measure-es-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const img = fullImage();
  const fw = join(dir, 'OVMF.fd');
  const kernel = join(dir, 'vmlinuz');
  writeFileSync(fw, img);
  writeFileSync(kernel, Buffer.alloc(4096, 7));
  const lib = computeLaunchMeasurement({
    ...FW,
    policy: 5,
    mnonce: Buffer.from(MNONCE, 'hex'),
    tik: Buffer.from(TIK, 'hex'),
    digest: expectedLaunchDigest({
      firmware: img,
      kernelHashes: { kernel: Buffer.alloc(4096, 7), cmdline: 'quiet' },
      sevEs: { vcpus: 4, cpu: 'EPYC-Genoa' },
    }),
  }).toString('hex');
  const args = [...common, '--firmware', fw, '--kernel', kernel, '--cmdline', 'quiet', '--vcpus', '4'];
  for (const cpu of [
    ['--vcpu-type', 'EPYC-Genoa'],
    ['--vcpu-family', '25', '--vcpu-model', '17', '--vcpu-stepping', '0'],
    ['--vcpu-sig', '0xa10f10'],
  ]) {
    const r = run(...args, ...cpu);
    t.is(r.status, 0, r.stderr);
    t.is((JSON.parse(r.stdout) as { measurement: string }).measurement, lib, cpu.join(' '));
  }
  const legacy = run(...args, '--vcpu-type', 'EPYC-Genoa', '--init', 'legacy');
  t.not((JSON.parse(legacy.stdout) as { measurement: string }).measurement, lib, 'legacy ES_INIT: no FPU state in the VMSAs');
});

test('measure --vcpus: the CPU is required; a kernel on an OVMF without a hashes table, or SEV-ES without a reset block, is refused with the reason', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kvm-sev-measure-es-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const noHashes = join(dir, 'no-hashes.fd');
  const noReset = join(dir, 'no-reset.fd');
  const kernel = join(dir, 'vmlinuz');
  writeFileSync(noHashes, ovmf(FW_SIZE, [[RESET_BLOCK, le32(AP_RESET)]]));
  writeFileSync(noReset, ovmf(FW_SIZE, [[HASHES, le32(0x80c00, 0x400)]]));
  writeFileSync(kernel, Buffer.alloc(64));
  const noCpu = run(...common, '--firmware', noHashes, '--vcpus', '2');
  t.is(noCpu.status, 2);
  t.regex(noCpu.stderr, /--vcpu-type/);
  const both = run(...common, '--firmware', noHashes, '--vcpus', '2', '--vcpu-sig', '1', '--vmsa', kernel);
  t.is(both.status, 2);
  const k = run(...common, '--firmware', noHashes, '--kernel', kernel, '--vcpus', '1', '--vcpu-type', 'EPYC');
  t.not(k.status, 0);
  t.regex(k.stderr, new RegExp(`no SEV hashes table \\(no footer table GUID ${HASHES}\\)`));
  const r = run(...common, '--firmware', noReset, '--vcpus', '2', '--vcpu-type', 'EPYC');
  t.not(r.status, 0);
  t.regex(r.stderr, new RegExp(`no SEV-ES reset block \\(footer table GUID ${RESET_BLOCK}\\)`));
});

/** `kvm-sev measure`: the launch measurement a guest owner should expect, from files and parameters. */
import { parseArgs } from 'node:util';
import {
  buildKernelHashesTable,
  computeLaunchMeasurement,
  expectedLaunchDigest,
  QEMU_EPYC_CPUS,
  SevFormatError,
  sevEsResetAddress,
  sevHashesTableArea,
  SEV_ES_RESET_BLOCK_GUID,
  SEV_HASH_TABLE_RV_GUID,
  type CpuInput,
  type KernelHashesInput,
  type SevEsLaunchInput,
} from '../../owner/index.js';
import { readInput, readSized } from './files.js';
import { apiVersion, EXIT, green, hex, int, red, toJson, UsageError } from './output.js';

export const MEASURE_HELP = `Usage: kvm-sev measure --api MAJOR.MINOR --build N --policy N (--tik HEX | --tik-file F)
                      (--mnonce HEX | --expected MEASURE‖MNONCE)
                      (--digest HEX | --firmware FILE [--kernel F [--initrd F] [--cmdline S]] [SEV-ES])
                      [--expected HEX] [--json]
  SEV-ES, as QEMU launches OVMF: --vcpus N (--vcpu-type EPYC-Milan | --vcpu-family F --vcpu-model M --vcpu-stepping S
                      | --vcpu-sig N) [--init init2|legacy]; or the VMSA pages themselves: --vmsa F ...

Prints the 32-byte LAUNCH_MEASURE value: HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖
DIGEST ‖ MNONCE), where DIGEST = SHA-256(firmware ‖ kernel-hashes table ‖ VMSAs) unless --digest is given.
--api/--build are the platform firmware's (PLATFORM_STATUS; each part 0..255); --policy is 32 bits.
--mnonce is the last 16 bytes LAUNCH_MEASURE returned. --expected HEX compares: 32 bytes (MEASURE) or the
48 bytes LAUNCH_MEASURE returned (MEASURE ‖ MNONCE), whose MNONCE is used when --mnonce is not given and
must equal it when it is. Exit status 0 on a match, 1 on a mismatch, 2 on a usage error.
SEV-ES: the VMSAs are built from the OVMF's SEV-ES reset vector (its footer table), the vCPU count and the
CPU signature, with QEMU's initial register state (as sev-snp-measure does); --init legacy for a launch with
KVM_SEV_ES_INIT (QEMU before 9.1 or Linux before 6.11), whose VMSAs carry no FPU state. A kernel needs an
OVMF with a hashes table (footer GUID ${SEV_HASH_TABLE_RV_GUID}).`;

type Values = Record<string, string | boolean | string[] | undefined>;
const str = (v: Values, k: string) => v[k] as string | undefined;

/** The TIK from --tik or --tik-file (16 bytes). */
function tikFrom(v: Values): Buffer {
  const tik = str(v, 'tik');
  const file = str(v, 'tik-file');
  if (tik !== undefined && file !== undefined) throw new UsageError('give --tik or --tik-file, not both');
  return file !== undefined ? readSized('--tik-file', file, 16) : hex('tik', tik, 16);
}

/** --vcpus and the CPU flags: an SEV-ES launch whose VMSAs the owner builds (expectedLaunchDigest's `sevEs`). */
function sevEsFlags(v: Values): SevEsLaunchInput {
  if (v['vmsa'] !== undefined) throw new UsageError('give --vcpus (VMSAs built as QEMU sets them) or --vmsa files, not both');
  const family = ['vcpu-family', 'vcpu-model', 'vcpu-stepping'].map((k) => str(v, k));
  const type = str(v, 'vcpu-type');
  const sig = str(v, 'vcpu-sig');
  const given = [type !== undefined, sig !== undefined, family.some((f) => f !== undefined)].filter(Boolean).length;
  if (given !== 1)
    throw new UsageError('--vcpus needs the CPU: --vcpu-type NAME, or --vcpu-family, --vcpu-model and --vcpu-stepping, or --vcpu-sig');
  let cpu: CpuInput;
  if (type !== undefined) {
    if (!Object.hasOwn(QEMU_EPYC_CPUS, type.replace(/-v\d+$/, '')))
      throw new UsageError(`--vcpu-type must be a QEMU EPYC model (${Object.keys(QEMU_EPYC_CPUS).join(', ')}), got '${type}'`);
    cpu = type;
  } else if (sig !== undefined) cpu = int('vcpu-sig', sig, 0xffffffff);
  else
    cpu = {
      family: int('vcpu-family', family[0], 0xf + 0xff), // base 0xf plus the 8-bit extended family
      model: int('vcpu-model', family[1], 0xff),
      stepping: int('vcpu-stepping', family[2], 0xf),
    };
  const init = str(v, 'init');
  if (init !== undefined && init !== 'init2' && init !== 'legacy') throw new UsageError(`--init is init2 or legacy, got '${init}'`);
  const vcpus = int('vcpus', str(v, 'vcpus'), 512);
  if (vcpus < 1) throw new UsageError(`--vcpus must be an integer from 1 to 512, got '${str(v, 'vcpus')}'`);
  return { vcpus, cpu, ...(init ? { init } : {}) };
}

/**
 * What the firmware's footer table must hold for the launch asked for, checked here so the refusal
 * names the flags (a hashes table for --kernel, an SEV-ES reset block for --vcpus).
 */
function checkFirmware(path: string, firmware: Buffer, kernelHashes: KernelHashesInput | undefined, sevEs: boolean): void {
  try {
    if (kernelHashes !== undefined) {
      const area = sevHashesTableArea(firmware);
      if (area === undefined)
        throw new UsageError(
          `--kernel: the --firmware '${path}' has no SEV hashes table (no footer table GUID ${SEV_HASH_TABLE_RV_GUID}), so QEMU refuses a ` +
            'direct kernel boot under SEV with it and the firmware would not check the hashes; use an OVMF built for measured direct boot (OvmfPkg/AmdSev)',
        );
      const need = buildKernelHashesTable(kernelHashes).length;
      if (area.base === 0 || area.size < need)
        throw new UsageError(
          `--kernel: the SEV hashes table area of --firmware '${path}' (base 0x${area.base.toString(16)}, ${area.size} bytes) cannot hold the ${need}-byte table`,
        );
    }
    if (sevEs && sevEsResetAddress(firmware) === undefined)
      throw new UsageError(
        `--vcpus: the --firmware '${path}' has no SEV-ES reset block (footer table GUID ${SEV_ES_RESET_BLOCK_GUID}), so QEMU cannot start its vCPUs under SEV-ES`,
      );
  } catch (e) {
    if (e instanceof SevFormatError) throw new UsageError(`--firmware '${path}': ${e.message}`);
    throw e;
  }
}

function digestFrom(v: Values): Buffer {
  const digest = str(v, 'digest');
  const fwPath = str(v, 'firmware');
  if (digest !== undefined && fwPath !== undefined) throw new UsageError('give --digest or --firmware, not both');
  if (digest !== undefined) {
    for (const f of ['kernel', 'initrd', 'cmdline', 'vmsa', 'vcpus'])
      if (v[f] !== undefined) throw new UsageError(`--${f} describes what was measured with --firmware; it does not go with --digest`);
    return hex('digest', digest, 32);
  }
  if (fwPath === undefined) throw new UsageError('give --digest or --firmware');
  const kernel = str(v, 'kernel');
  for (const f of ['initrd', 'cmdline'])
    if (v[f] !== undefined && kernel === undefined)
      throw new UsageError(`--${f} goes with --kernel (the hashes table of a direct kernel boot)`);
  if (v['vcpus'] === undefined)
    for (const f of ['vcpu-type', 'vcpu-family', 'vcpu-model', 'vcpu-stepping', 'vcpu-sig', 'init'])
      if (v[f] !== undefined) throw new UsageError(`--${f} goes with --vcpus (an SEV-ES launch)`);
  const firmware = readInput('--firmware', fwPath);
  const initrd = str(v, 'initrd');
  const cmdline = str(v, 'cmdline');
  const kernelHashes =
    kernel === undefined
      ? undefined
      : {
          kernel: readInput('--kernel', kernel),
          ...(initrd !== undefined ? { initrd: readInput('--initrd', initrd) } : {}),
          ...(cmdline !== undefined ? { cmdline } : {}),
        };
  const sevEs = v['vcpus'] !== undefined ? sevEsFlags(v) : undefined;
  checkFirmware(fwPath, firmware, kernelHashes, sevEs !== undefined);
  return expectedLaunchDigest({
    firmware,
    ...(kernelHashes ? { kernelHashes } : {}),
    ...(sevEs ? { sevEs } : { vmsas: ((v['vmsa'] as string[] | undefined) ?? []).map((f) => readSized('--vmsa', f, 4096)) }),
  });
}

export function measure(argv: string[]): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      api: { type: 'string' },
      build: { type: 'string' },
      policy: { type: 'string' },
      mnonce: { type: 'string' },
      tik: { type: 'string' },
      'tik-file': { type: 'string' },
      digest: { type: 'string' },
      firmware: { type: 'string' },
      kernel: { type: 'string' },
      initrd: { type: 'string' },
      cmdline: { type: 'string' },
      vmsa: { type: 'string', multiple: true },
      vcpus: { type: 'string' },
      'vcpu-type': { type: 'string' },
      'vcpu-family': { type: 'string' },
      'vcpu-model': { type: 'string' },
      'vcpu-stepping': { type: 'string' },
      'vcpu-sig': { type: 'string' },
      init: { type: 'string' },
      expected: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(MEASURE_HELP);
    return EXIT.OK;
  }
  const [apiMajor, apiMinor] = apiVersion(values.api);
  const build = int('build', values.build, 0xff);
  const policy = int('policy', values.policy, 0xffffffff);
  const tik = tikFrom(values);
  const expected = values.expected === undefined ? undefined : hex('expected', values.expected, [32, 48]);
  const expectedNonce = expected?.length === 48 ? expected.subarray(32) : undefined;
  let mnonce: Buffer;
  if (values.mnonce !== undefined) {
    mnonce = hex('mnonce', values.mnonce, 16);
    if (expectedNonce && !expectedNonce.equals(mnonce))
      throw new UsageError(
        `--expected ends in the MNONCE ${expectedNonce.toString('hex')}, but --mnonce is ${mnonce.toString('hex')}: ` +
          'a measurement is over one nonce; give the LAUNCH_MEASURE output alone, or a matching --mnonce',
      );
  } else if (expectedNonce) mnonce = Buffer.from(expectedNonce);
  else throw new UsageError('--mnonce is required (or give --expected with the 48 bytes LAUNCH_MEASURE returned)');
  const digest = digestFrom(values);
  const m = computeLaunchMeasurement({ apiMajor, apiMinor, build, policy, digest, mnonce, tik });
  const match = expected === undefined ? undefined : expected.subarray(0, 32).equals(m);
  if (values.json) console.log(toJson({ measurement: m, mnonce, digest, ...(match === undefined ? {} : { match }) }));
  else {
    console.log(m.toString('hex'));
    if (match !== undefined)
      console.log(match ? green('matches the expected measurement') : red('does NOT match the expected measurement'));
  }
  return match === false ? EXIT.FAILED : EXIT.OK;
}

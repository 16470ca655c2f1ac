/** `kvm-sev measure`: the launch measurement a guest owner should expect, from files and parameters. */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { computeLaunchMeasurement, expectedLaunchDigest, type CpuInput, type SevEsLaunchInput } from '../../owner/index.js';
import { apiVersion, EXIT, green, hex, int, red, toJson, UsageError } from './output.js';

export const MEASURE_HELP = `Usage: kvm-sev measure --api MAJOR.MINOR --build N --policy N --mnonce HEX (--tik HEX | --tik-file F)
                      (--digest HEX | --firmware FILE [--kernel F [--initrd F] [--cmdline S]] [SEV-ES])
                      [--expected HEX] [--json]
  SEV-ES, as QEMU launches OVMF: --vcpus N (--vcpu-type EPYC-Milan | --vcpu-family F --vcpu-model M --vcpu-stepping S
                      | --vcpu-sig N) [--init init2|legacy]; or the VMSA pages themselves: --vmsa F ...

Prints the 32-byte LAUNCH_MEASURE value: HMAC-SHA256(TIK, 0x04 ‖ API_MAJOR ‖ API_MINOR ‖ BUILD ‖ POLICY ‖
DIGEST ‖ MNONCE), where DIGEST = SHA-256(firmware ‖ kernel-hashes table ‖ VMSAs) unless --digest is given.
--api/--build are the platform firmware's (PLATFORM_STATUS); --mnonce is the last 16 bytes LAUNCH_MEASURE
returned. --expected HEX (32 or 48 bytes) compares: exit status 0 on a match, 1 on a mismatch.
SEV-ES: the VMSAs are built from the OVMF's SEV-ES reset vector (its footer table), the vCPU count and the
CPU signature, with QEMU's initial register state (as sev-snp-measure does); --init legacy for a launch with
KVM_SEV_ES_INIT (QEMU before 9.1 or Linux before 6.11), whose VMSAs carry no FPU state. A kernel needs an
OVMF with a hashes table (footer GUID 7255371f-3a3b-4b04-927b-1da6efa8d454).`;

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
  const tik = values['tik-file'] ? readFileSync(values['tik-file']) : hex('tik', values.tik, 16);
  if (tik.length !== 16) throw new UsageError('the TIK is 16 bytes');
  let digest: Buffer;
  if (values.digest) digest = hex('digest', values.digest, 32);
  else if (values.firmware) {
    digest = expectedLaunchDigest({
      firmware: readFileSync(values.firmware),
      ...(values.kernel
        ? {
            kernelHashes: {
              kernel: readFileSync(values.kernel),
              ...(values.initrd ? { initrd: readFileSync(values.initrd) } : {}),
              ...(values.cmdline !== undefined ? { cmdline: values.cmdline } : {}),
            },
          }
        : {}),
      ...(values.vcpus !== undefined ? { sevEs: sevEsFlags(values) } : { vmsas: (values.vmsa ?? []).map((f) => readFileSync(f)) }),
    });
  } else throw new UsageError('give --digest or --firmware');
  const mnonce = hex('mnonce', values.mnonce, 16);
  const m = computeLaunchMeasurement({
    apiMajor,
    apiMinor,
    build: int('build', values.build),
    policy: int('policy', values.policy),
    digest,
    mnonce,
    tik,
  });
  let match: boolean | undefined;
  if (values.expected) {
    const e = hex('expected', values.expected);
    if (e.length !== 32 && e.length !== 48) throw new UsageError('--expected is 32 bytes (MEASURE) or 48 (MEASURE ‖ MNONCE)');
    match = e.subarray(0, 32).equals(m);
  }
  if (values.json) console.log(toJson({ measurement: m, digest, ...(match === undefined ? {} : { match }) }));
  else {
    console.log(m.toString('hex'));
    if (match !== undefined)
      console.log(match ? green('matches the expected measurement') : red('does NOT match the expected measurement'));
  }
  return match === false ? EXIT.FAILED : EXIT.OK;
}

/** --vcpus and the CPU flags: an SEV-ES launch whose VMSAs the owner builds (expectedLaunchDigest's `sevEs`). */
function sevEsFlags(v: Record<string, string | boolean | string[] | undefined>): SevEsLaunchInput {
  const str = (k: string) => v[k] as string | undefined;
  if (v['vmsa'] !== undefined) throw new UsageError('give --vcpus (VMSAs built as QEMU sets them) or --vmsa files, not both');
  const family = ['vcpu-family', 'vcpu-model', 'vcpu-stepping'].map(str);
  const given = [str('vcpu-type') !== undefined, str('vcpu-sig') !== undefined, family.some((f) => f !== undefined)].filter(Boolean).length;
  if (given !== 1)
    throw new UsageError('--vcpus needs the CPU: --vcpu-type NAME, or --vcpu-family, --vcpu-model and --vcpu-stepping, or --vcpu-sig');
  let cpu: CpuInput;
  if (str('vcpu-type') !== undefined) cpu = str('vcpu-type')!;
  else if (str('vcpu-sig') !== undefined) cpu = int('vcpu-sig', str('vcpu-sig'));
  else cpu = { family: int('vcpu-family', family[0]), model: int('vcpu-model', family[1]), stepping: int('vcpu-stepping', family[2]) };
  const init = str('init');
  if (init !== undefined && init !== 'init2' && init !== 'legacy') throw new UsageError(`--init is init2 or legacy, got '${init}'`);
  return { vcpus: int('vcpus', str('vcpus')), cpu, ...(init ? { init } : {}) };
}

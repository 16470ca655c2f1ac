/** `kvm-sev status`: the SEV platform's status (PLATFORM_STATUS) and identity (GET_ID2). */
import { parseArgs } from 'node:util';
import { SevPlatform } from '../../sev/platform.js';
import { BACKEND_HELP, BACKEND_OPTION, hostFrom } from './backend-option.js';
import { bold, dim, EXIT, toJson } from './output.js';

export const STATUS_HELP = `Usage: kvm-sev status [--backend native|hybrid|mock] [--json]

Prints the platform state, firmware API version and build, guest count, owner and SEV-ES flags, and the
chip id (GET_ID2), from /dev/sev (opened read-only).
${BACKEND_HELP}`;

export async function status(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { ...BACKEND_OPTION, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(STATUS_HELP);
    return EXIT.OK;
  }
  const host = await hostFrom(values);
  using p = SevPlatform.open(host.backend, { write: false });
  const st = await p.platformStatus();
  let id: Uint8Array | undefined;
  try {
    id = await p.getId2();
  } catch {
    /* firmware before 0.16, or a read-only fd on an UNINIT platform */
  }
  if (values.json) {
    console.log(toJson({ backend: host.name, ...st, ...(id ? { id } : {}) }));
    return EXIT.OK;
  }
  console.log(`${bold(`backend: ${host.name}`)} ${dim(`(${host.reason})`)}`);
  console.log(`state        ${st.stateName}`);
  console.log(`firmware     API ${st.apiMajor}.${st.apiMinor}, build ${st.build}`);
  console.log(`guests       ${st.guestCount}`);
  console.log(`owner        ${st.owner ? 'externally owned (PEK imported)' : 'self-owned'}`);
  console.log(`SEV-ES       ${st.configEs ? 'initialised' : 'not initialised'}`);
  if (id) console.log(`chip id      ${Buffer.from(id).toString('hex').slice(0, 32)}…`);
  return EXIT.OK;
}

/** The --backend option shared by commands that talk to a host. */
import { openHost, type OpenedHost } from '../open-host.js';
import { UsageError } from './output.js';

export const BACKEND_OPTION = { backend: { type: 'string' }, processor: { type: 'string' } } as const;
export const BACKEND_HELP = `  --backend native|hybrid|mock   default: native where KVM and SEV work, hybrid where only KVM does, else mock
  --processor naples|rome|milan|genoa   the mocked processor (hybrid, mock; default milan)`;

export function hostFrom(
  values: { backend?: string | undefined; processor?: string | undefined },
  extra: { trace?: boolean; hybrid?: { emulateHypercalls?: { port: number } } } = {},
): Promise<OpenedHost> {
  const b = values.backend;
  if (b !== undefined && b !== 'native' && b !== 'hybrid' && b !== 'mock')
    throw new UsageError(`--backend must be native, hybrid or mock, got '${b}'`);
  const p = values.processor;
  if (p !== undefined && !['naples', 'rome', 'milan', 'genoa'].includes(p))
    throw new UsageError(`--processor must be naples, rome, milan or genoa, got '${p}'`);
  return openHost({
    ...(b ? { backend: b } : {}),
    mock: { ...(p ? { processor: p as 'milan' } : {}), ...(extra.trace ? { trace: true } : {}) },
    ...(extra.hybrid ? { hybrid: extra.hybrid } : {}),
  });
}

/**
 * The real host's {@link SystemView}: /sys/module, /proc/self and the device nodes.
 */
import { accessSync, constants, readdirSync, readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import type { CpuInfo, DeviceAccess, SystemView } from '../../backend/system-view.js';

/** The first CPU's "key : value" lines of /proc/cpuinfo. */
function firstCpu(): Map<string, string> {
  const fields = new Map<string, string>();
  let text: string;
  try {
    text = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return fields;
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '') {
      if (fields.size) break; // the blank line after the first CPU
      continue;
    }
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return fields;
}

function modeString(mode: number): string {
  const t = (mode & 0o170000) === 0o020000 ? 'c' : (mode & 0o170000) === 0o040000 ? 'd' : '-';
  const bits = 'rwxrwxrwx';
  let s = t;
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  return s;
}

/** The real host. */
export class HostSystemView implements SystemView {
  kvmAmdParam(name: string): string | undefined {
    try {
      return readFileSync(`/sys/module/kvm_amd/parameters/${name}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  }
  kvmModules(): string[] {
    // /sys/module lists built-in modules too (/proc/modules does not).
    try {
      return readdirSync('/sys/module').filter((m) => m.startsWith('kvm'));
    } catch {
      return [];
    }
  }
  memlockLimit(): bigint | 'unlimited' {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max locked memory'));
    const soft = line?.slice(26).trim().split(/\s+/)[0];
    if (!soft || soft === 'unlimited') return 'unlimited';
    return BigInt(soft);
  }
  capIpcLock(): boolean {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapEff:'));
    if (!line) return false;
    return (BigInt(`0x${line.slice(7).trim()}`) & (1n << 14n)) !== 0n; // CAP_IPC_LOCK = 14
  }
  device(path: string): DeviceAccess {
    const can = (m: number) => {
      try {
        accessSync(path, m);
        return true;
      } catch {
        return false;
      }
    };
    try {
      const st = statSync(path);
      return {
        path,
        exists: true,
        readable: can(constants.R_OK),
        writable: can(constants.W_OK),
        mode: modeString(st.mode),
        uid: st.uid,
        gid: st.gid,
      };
    } catch {
      return { path, exists: false, readable: false, writable: false };
    }
  }
  cpuFlags(): Set<string> {
    const flags = firstCpu().get('flags');
    return new Set(flags ? flags.split(/\s+/) : []);
  }
  cpuInfo(): CpuInfo | undefined {
    const f = firstCpu();
    const num = (k: string) => {
      const v = f.get(k);
      return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
    };
    const family = num('cpu family');
    const model = num('model');
    const stepping = num('stepping');
    const vendor = f.get('vendor_id');
    if (vendor === undefined || family === undefined || model === undefined || stepping === undefined) return undefined;
    return { vendor, family, model, stepping, modelName: f.get('model name') ?? '' };
  }
  kernelRelease(): string {
    return release();
  }
}

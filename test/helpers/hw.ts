/**
 * Hardware gating: a test that needs a device runs where the device works, and is reported as
 * pending (ava "todo"), with the reason in its title, where it does not. Never a silent pass.
 */
import test, { type ExecutionContext } from 'ava';
import { accessSync, constants } from 'node:fs';
import { addonAvailable, loadAddon } from '../../lib/backends/native/addon.js';

export interface Requirement {
  ok: boolean;
  reason: string;
}

function deviceUsable(path: string): Requirement {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
  } catch (e) {
    return { ok: false, reason: `${path} is not usable here (${(e as NodeJS.ErrnoException).code})` };
  }
  return { ok: true, reason: '' };
}

export function nativeAddon(): Requirement {
  if (addonAvailable()) return { ok: true, reason: '' };
  try {
    loadAddon();
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  return { ok: true, reason: '' };
}

export function kvmDevice(): Requirement {
  const a = nativeAddon();
  if (!a.ok) return a;
  return deviceUsable('/dev/kvm');
}

export function sevDevice(): Requirement {
  const a = nativeAddon();
  if (!a.ok) return a;
  return deviceUsable('/dev/sev');
}

/** `test(title, fn)` if the requirement holds, else a pending entry that says why. */
export function hwTest(req: Requirement, title: string, fn: (t: ExecutionContext) => void | Promise<void>): void {
  if (req.ok) test(title, fn);
  else test.todo(`${title} — pending: ${req.reason}`);
}

/** The serial variant, for tests that measure process-wide things (fd counts, RSS). */
export function hwTestSerial(req: Requirement, title: string, fn: (t: ExecutionContext) => void | Promise<void>): void {
  if (req.ok) test.serial(title, fn);
  else test.todo(`${title} — pending: ${req.reason}`);
}

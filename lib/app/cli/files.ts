/**
 * Reading and writing the files a command line names: a failure is a usage error that names the
 * flag and the file, not a bare ENOENT from fs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { UsageError } from './output.js';

const WHY: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
};

function why(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return (err.code && WHY[err.code]) ?? err.code ?? err.message;
}

/** The bytes of `path`, which `flag` named (e.g. '--tik-file', or 'FILE' for a positional). */
export function readInput(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`${flag}: cannot read '${path}' (${why(e)})`);
  }
}

/** Writes `path`, which `flag` named. */
export function writeOutput(flag: string, path: string, data: Uint8Array | string): void {
  try {
    writeFileSync(path, data);
  } catch (e) {
    throw new UsageError(`${flag}: cannot write '${path}' (${why(e)})`);
  }
}

/** Reads `path` and checks its length, naming the flag and the file when it is wrong. */
export function readSized(flag: string, path: string, bytes: number): Buffer {
  const b = readInput(flag, path);
  if (b.length !== bytes) throw new UsageError(`${flag}: '${path}' must hold exactly ${bytes} bytes, it holds ${b.length}`);
  return b;
}

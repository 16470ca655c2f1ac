/**
 * Two hosts on this machine: a target and a source process (live-vmm.js), each with its own hybrid
 * backend and mock firmware, joined through a TCP proxy in the test process that records the
 * source's stream and can cut it, alter a record, or kill a process when a record passes.
 */
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { RECORD, RecordParser } from '../../../lib/migration/live/stream.js';
import type { LiveVmmConfig } from './live-vmm.js'; // a type only: importing the script would run it

const script = new URL('./live-vmm.js', import.meta.url).pathname;

export interface Host {
  proc: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; json?: Record<string, unknown>; stderr: string }>;
  waitFor(s: string | RegExp): Promise<string>;
  kill(): void;
}

export function startHost(t: ExecutionContext, role: 'source' | 'target', port: number, cfg: LiveVmmConfig): Host {
  const proc = spawn(process.execPath, [script, role, String(port), JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void proc.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  const waiters: [string | RegExp, (m: string) => void][] = [];
  const check = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const [s, f] = waiters[i]!;
      const m = typeof s === 'string' ? (stderr.includes(s) ? s : undefined) : s.exec(stderr)?.[0];
      if (m !== undefined) {
        waiters.splice(i, 1);
        f(m);
      }
    }
  };
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => {
    stderr += d;
    check();
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; json?: Record<string, unknown>; stderr: string }>(
    (resolve) =>
      proc.on('exit', (code, signal) => {
        const line = stdout.trim().split('\n').pop();
        let json: Record<string, unknown> | undefined;
        try {
          json = line ? (JSON.parse(line) as Record<string, unknown>) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ code, signal, stderr, ...(json ? { json } : {}) });
      }),
  );
  return {
    proc,
    done,
    waitFor: (s) =>
      new Promise<string>((resolve, reject) => {
        waiters.push([s, resolve]);
        check();
        void done.then((d) => reject(new Error(`${role} exited (${d.code ?? d.signal}) before ${String(s)}: ${d.stderr.slice(-1500)}`)));
      }),
    kill: () => void proc.kill('SIGKILL'),
  };
}

export type ProxyAction = 'forward' | 'cut' | { alter: (raw: Buffer) => void };

export interface Proxy {
  port: number;
  /** Every byte the source sent. */
  captured(): Buffer;
  /** Counts of source→target records by type. */
  counts: Map<number, number>;
  close(): void;
}

/**
 * A one-connection proxy. `onRecord(type, n)` decides for each source→target record (n counts that
 * type from 1); `onReply` sees each target→source record before it is forwarded.
 */
export async function startProxy(
  t: ExecutionContext,
  targetPort: number,
  onRecord: (type: number, n: number) => ProxyAction = () => 'forward',
  onReply: (type: number) => void = () => {},
): Promise<Proxy> {
  const chunks: Buffer[] = [];
  const counts = new Map<number, number>();
  const sockets: net.Socket[] = [];
  const server = net.createServer((src) => {
    const dst = net.connect({ port: targetPort, host: '127.0.0.1' });
    sockets.push(src, dst);
    const up = new RecordParser();
    const down = new RecordParser();
    const cut = () => {
      src.destroy();
      dst.destroy();
    };
    src.on('data', (d: Buffer) => {
      chunks.push(Buffer.from(d));
      up.push(d);
      for (let r = up.take(); r; r = up.take()) {
        const n = (counts.get(r.type) ?? 0) + 1;
        counts.set(r.type, n);
        const a = onRecord(r.type, n);
        if (a === 'cut') return cut();
        const raw = Buffer.from(r.raw);
        if (typeof a === 'object') a.alter(raw);
        dst.write(raw);
      }
    });
    dst.on('data', (d: Buffer) => {
      down.push(d);
      for (let r = down.take(); r; r = down.take()) {
        onReply(r.type);
        src.write(r.raw);
      }
    });
    src.on('close', () => dst.end());
    dst.on('close', () => src.end());
    src.on('error', () => dst.destroy());
    dst.on('error', () => src.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const close = () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  t.teardown(close);
  return { port: (server.address() as net.AddressInfo).port, captured: () => Buffer.concat(chunks), counts, close };
}

/** Starts a target, waits for its port. */
export async function startTarget(t: ExecutionContext, cfg: LiveVmmConfig = {}): Promise<Host & { port: number }> {
  const h = startHost(t, 'target', 0, cfg);
  const m = await h.waitFor(/LISTENING (\d+)/);
  return { ...h, port: Number(/(\d+)/.exec(m)![1]) };
}

export { RECORD };

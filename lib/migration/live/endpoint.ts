/**
 * Where a migration stream goes or comes from: TCP (`node:net`), TLS (`node:tls`) or a Unix socket,
 * or a stream the caller connected itself.
 */
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { KvmSevError } from '../../backend/errors.js';
import { invalidArgValue } from '../../uapi/errors.js';

export type ConnectTo = { host?: string; port: number } | { path: string } | { socket: Duplex };
export type ListenOn = { host?: string; port: number } | { path: string } | { socket: Duplex } | { server: net.Server };

function describe(e: ConnectTo | ListenOn): string {
  if ('socket' in e) return 'the given socket';
  if ('server' in e) return 'the given server';
  if ('path' in e) return `unix:${e.path}`;
  return `${e.host ?? '127.0.0.1'}:${e.port}`;
}

/** Connects (TLS when `tlsOptions` is given); resolves once the connection (and handshake) is up. */
export function connectTo(to: ConnectTo, tlsOptions: tls.ConnectionOptions | undefined, timeoutMs: number): Promise<Duplex> {
  if (typeof to !== 'object' || to === null) throw invalidArgValue('options.to', to, 'must be { host, port }, { path } or { socket }');
  if ('socket' in to) return Promise.resolve(to.socket);
  return new Promise<Duplex>((resolve, reject) => {
    const where = describe(to);
    const opts = 'path' in to ? { path: to.path } : { host: to.host ?? '127.0.0.1', port: to.port };
    const s = tlsOptions ? tls.connect({ ...tlsOptions, ...opts }) : net.connect(opts);
    const t = setTimeout(() => {
      s.destroy();
      reject(new KvmSevError('ERR_KVM_SEV_TIMEOUT', `could not connect to ${where} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once(tlsOptions ? 'secureConnect' : 'connect', () => {
      clearTimeout(t);
      s.setNoDelay?.(true);
      resolve(s);
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(
        Object.assign(
          new KvmSevError('ERR_KVM_SEV_CONNECT', `could not connect to ${where}: ${e.message} (is the target's receive running?)`),
          {
            cause: e,
            ...(e.errno !== undefined ? { errno: e.errno } : {}),
            syscall: 'connect',
          },
        ),
      );
    });
  });
}

/**
 * Listens and accepts one connection (the server, if made here, is closed after it: one migration,
 * one connection). `onListening` gets the bound address (the port, when 0 was asked for).
 */
export function acceptOne(
  from: ListenOn,
  tlsOptions: tls.TlsOptions | undefined,
  onListening?: (address: net.AddressInfo | string) => void,
): { connection: Promise<Duplex>; close(): void } {
  if (typeof from !== 'object' || from === null)
    throw invalidArgValue('options.from', from, 'must be { port, host? }, { path }, { socket } or { server }');
  if ('socket' in from) return { connection: Promise.resolve(from.socket), close() {} };
  const own = !('server' in from);
  const server = 'server' in from ? from.server : tlsOptions ? tls.createServer(tlsOptions) : net.createServer();
  const connection = new Promise<Duplex>((resolve, reject) => {
    const ev = server instanceof tls.Server ? 'secureConnection' : 'connection';
    server.once(ev, (s: net.Socket) => {
      s.setNoDelay(true);
      if (own) server.close();
      resolve(s);
    });
    server.once('error', (e: Error) =>
      reject(Object.assign(new KvmSevError('ERR_KVM_SEV_LISTEN', `cannot listen on ${describe(from)}: ${e.message}`), { cause: e })),
    );
    const report = () => onListening?.(server.address() ?? '');
    if (own) {
      if ('path' in from) server.listen(from.path, report);
      else server.listen(from.port, from.host ?? '127.0.0.1', report);
    } else if (server.listening) report();
    else server.once('listening', report);
  });
  return { connection, close: () => own && server.close() };
}

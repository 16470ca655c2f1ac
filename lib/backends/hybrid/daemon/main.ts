/**
 * The shared mock SEV daemon's entry (no bin): `node dist/lib/backends/hybrid/daemon/main.js <socket> [kernel] [processor]`.
 * Started on demand by the first hybrid backend that wants the shared service (remote-sev.ts); it
 * exits when its last client has gone and no VM is left. If another daemon already serves the
 * socket, this one exits at once (two clients may race to start one); a stale socket is replaced.
 */
import { unlinkSync } from 'node:fs';
import { NativeBackend } from '../../native/native-backend.js';
import { MockSevServer } from './server.js';
import { type KernelProfile, type ProcessorName } from '../../mock/seam.js';

const [socket, kernel, processor] = process.argv.slice(2);
if (!socket) {
  console.error('usage: node main.js <socket> [kernel] [processor]');
  process.exit(2);
}

function start(): MockSevServer | undefined {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return new MockSevServer({
        socket: socket!,
        ...(kernel ? { kernel: kernel as KernelProfile } : {}),
        ...(processor ? { processor: processor as ProcessorName } : {}),
        onClose: () => setImmediate(() => process.exit(0)),
      });
    } catch (e) {
      if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
      try {
        new NativeBackend().unixConnect(socket!).close();
        return undefined; // a live daemon serves it
      } catch (c) {
        // Only a refused connection means nobody listens; EAGAIN is a live daemon that is busy.
        if ((c as { code?: string }).code !== 'ECONNREFUSED') return undefined;
        try {
          unlinkSync(socket!); // stale: its daemon died
        } catch {
          /* raced with another starter */
        }
      }
    }
  }
  throw new Error(`cannot listen on ${socket}`);
}

if (!start()) process.exit(0);
console.log('KVM-SEV-MOCK-DAEMON-READY');

/**
 * `kvm-sev/mock` never loads the native addon: a child process with KVM_SEV_ADDON pointing nowhere
 * and process.dlopen replaced by a function that throws imports the mock (and the library above the
 * contract) and runs a full launch. The same child checks that dropped fds are closed by the
 * finalizer (it needs --expose-gc).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const mock = new URL('../../../lib/backends/mock/index.js', import.meta.url).href;
const lib = new URL('../../../lib/index.js', import.meta.url).href;

test('the mock runs a full launch where the addon cannot load (and dlopen throws)', (t) => {
  const script = `
    let dlopens = 0;
    process.dlopen = () => { dlopens++; throw new Error('dlopen is forbidden in this test'); };
    const { MockHost } = await import(${JSON.stringify(mock)});
    const { Kvm, SevGuestCommands, SevPlatform } = await import(${JSON.stringify(lib)});
    const host = new MockHost();
    const kvm = Kvm.open({ backend: host });
    const vm = kvm.createVm();
    const mem = vm.addMemory({ guestPhysAddr: 0n, size: 0x4000 });
    mem.write(0x1000n, new TextEncoder().encode('no addon needed!'));
    const cmds = new SevGuestCommands(vm, SevPlatform.open(host));
    await cmds.init();
    await cmds.launchStart({ policy: 0 });
    await cmds.launchUpdateData(mem.range(0x1000n, 0x1000));
    const { measure } = await cmds.launchMeasure();
    await cmds.launchFinish();
    const out = new Uint8Array(16);
    await cmds.dbgDecrypt(mem.range(0x1000n, 16), out);
    const fds0 = host.openFds;
    (() => { for (let i = 0; i < 20; i++) host.open('/dev/kvm'); })();
    const held = host.openFds;
    for (let i = 0; i < 30 && host.openFds > fds0; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
    process.stdout.write(JSON.stringify({ dlopens, text: new TextDecoder().decode(out), mlen: measure.length,
      held: held - fds0, left: host.openFds - fds0, state: (await cmds.guestStatus()).stateName }));`;
  const stdout = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, KVM_SEV_ADDON: '/nonexistent/kvm_sev.node' },
  });
  const r = JSON.parse(stdout) as { dlopens: number; text: string; mlen: number; held: number; left: number; state: string };
  t.deepEqual(r, { dlopens: 0, text: 'no addon needed!', mlen: 32, held: 20, left: 0, state: 'RUNNING' });
});

test('package.json exports ./mock with its types', (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as {
    exports: Record<string, unknown>;
  };
  t.deepEqual(pkg.exports['./mock'], { types: './dist/lib/backends/mock/index.d.ts', default: './dist/lib/backends/mock/index.js' });
});

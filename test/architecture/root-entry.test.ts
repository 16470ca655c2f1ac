/**
 * `import 'kvm-sev'` loads the KVM and SEV API and the native backend, and not one module of the
 * mock, the hybrid, the guest owner or the demo (they load only from their own subpaths).
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';

const dist = new URL('../../lib/', import.meta.url);

/** Every lib/ module a fresh process loads for `import(entry)`, recorded by a module-load hook. */
function modulesLoadedBy(entry: string): string[] {
  const hook = `
    let port;
    export function initialize(data) { port = data.port; port.on('message', () => port.postMessage(null)); }
    export async function load(url, context, next) { port.postMessage(url); return next(url, context); }`;
  const script = `
    import { register } from 'node:module';
    import { MessageChannel } from 'node:worker_threads';
    const { port1, port2 } = new MessageChannel();
    const seen = [];
    const flushed = new Promise((resolve) => port1.on('message', (u) => (u === null ? resolve() : seen.push(u))));
    register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}), { data: { port: port2 }, transferList: [port2] });
    await import(${JSON.stringify(new URL(entry, dist).href)});
    port1.postMessage('flush');
    await flushed;
    port1.close();
    console.log(JSON.stringify(seen.filter((u) => u.startsWith(${JSON.stringify(dist.href)})).map((u) => u.slice(${dist.href.length}))));`;
  return JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
}

test('the root entry loads no module of the mock, the hybrid, the owner or the demo', (t) => {
  const loaded = modulesLoadedBy('index.js');
  t.true(loaded.includes('kvm/kvm.js') && loaded.includes('sev/launch.js'), `the hook saw the API load: ${loaded.length} modules`);
  t.deepEqual(
    loaded.filter((m) => /^(backends\/(mock|hybrid)|owner|app\/(demo|cli))\//.test(m)),
    [],
  );
});

test('kvm-sev/mock loads the mock without the native addon loader or the hybrid', (t) => {
  const loaded = modulesLoadedBy('backends/mock/index.js');
  t.true(loaded.some((m) => m.startsWith('backends/mock/psp/')));
  t.deepEqual(
    loaded.filter((m) => /^backends\/(native|hybrid)\//.test(m)),
    [],
  );
});

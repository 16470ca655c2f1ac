/**
 * A lint over the tests' own sources: every resource a test opens (a /dev/kvm or /dev/sev fd, a VM,
 * a vCPU fd, a memfd, a mapping, a vCPU runner, a socket or the fds received on it, a VM attached to
 * the mock's SEV layer, a child process, a Worker, a temporary folder, a connection to the shared mock
 * SEV service) is released on every path, so a test that throws half-way leaks nothing into the rest
 * of the run. Released means one of:
 *   - a `using` / `await using` declaration;
 *   - a `t.teardown(…)` in the same function (or one around it) whose callback names the resource
 *     (at module level, a `test.after.always(…)` that names it)
 *     (a callback given by name, `t.teardown(close)`, counts with the body of that local function);
 *   - a `try … finally` right after the declaration whose finally block names it;
 *   - closed in the same expression (`b.ioctlFd(…).close()`);
 *   - the expression a `t.throws(() => …)` expects to throw (nothing is opened when it does).
 * A resource stored on `this` is released by the class's `[Symbol.dispose]()`, and constructing
 * such a class is itself an opening. The analysis reads the TypeScript syntax tree, so code inside
 * strings (the scripts child processes run) is not looked at.
 *
 * Not checked: what a VM owns (`vm.addMemory()`, `vm.createVcpu()`; `Vm.close()` releases them), and
 * whether the teardown that names a resource really closes it.
 */
import ts from 'typescript';

export interface Finding {
  file: string;
  line: number;
  what: string;
  why: string;
}

/** Methods that return something to release, whatever object they are called on. */
const OPENING_METHODS = new Set([
  'createVm',
  'ioctlFd',
  'memfdCreate',
  'mmapAnonymous',
  'mmapShared',
  'createRunner',
  'socketPair',
  'unixListen',
  'unixConnect',
  'unixAccept',
  'recvFds',
  // eventfds, device, stats and guest_memfd fds (a VM's close() does not close them)
  'eventfd',
  'createDevice',
  'statsFd',
  'createGuestMemfd',
]);
/** Functions of node:child_process and node:fs that leave a process or a folder behind. */
const OPENING_FUNCTIONS = new Set(['spawn', 'fork', 'execFile', 'mkdtempSync']);
/** Calls that return a Promise of the resource (it may be bound first and awaited later). */
const ASYNC_OPENERS = new Set(['unixAccept', 'recvFds']);
const RELEASING_METHODS = new Set(['close', 'unmap', 'kill', 'destroy']);

type Fn = ts.FunctionLikeDeclaration;

function unwrap(n: ts.Node): ts.Node {
  let c = n;
  while (
    ts.isParenthesizedExpression(c.parent) ||
    (ts.isConditionalExpression(c.parent) && c.parent.condition !== c) ||
    ts.isAwaitExpression(c.parent) ||
    ts.isAsExpression(c.parent) ||
    ts.isNonNullExpression(c.parent) ||
    ts.isSatisfiesExpression(c.parent) ||
    ts.isTypeAssertionExpression(c.parent)
  )
    c = c.parent;
  return c;
}

function isAwaited(call: ts.Node): boolean {
  for (let c = call; c !== unwrap(call); c = c.parent) if (ts.isAwaitExpression(c.parent)) return true;
  return false;
}

function bindingNames(name: ts.BindingName): string[] {
  if (ts.isIdentifier(name)) return [name.text];
  const out: string[] = [];
  for (const e of name.elements) if (!ts.isOmittedExpression(e)) out.push(...bindingNames(e.name));
  return out;
}

/** `x`, `this.x`, or the container of `this.x[i]`. */
function refName(e: ts.Expression): string | undefined {
  if (ts.isIdentifier(e)) return e.text;
  if (ts.isPropertyAccessExpression(e) && e.expression.kind === ts.SyntaxKind.ThisKeyword) return `this.${e.name.text}`;
  if (ts.isElementAccessExpression(e)) return refName(e.expression);
  return undefined;
}

function enclosingFunction(n: ts.Node): Fn | undefined {
  for (let c = n.parent; c; c = c.parent) if (ts.isFunctionLike(c) && 'body' in c) return c as Fn;
  return undefined;
}

function enclosingClass(n: ts.Node): ts.ClassLikeDeclaration | undefined {
  for (let c = n.parent; c; c = c.parent) if (ts.isClassLike(c)) return c;
  return undefined;
}

function descendants(n: ts.Node, f: (x: ts.Node) => void): void {
  const walk = (x: ts.Node): void => {
    f(x);
    ts.forEachChild(x, walk);
  };
  walk(n);
}

/** Does the subtree name `ref` (an identifier, or `this.x`)? */
function mentions(n: ts.Node, ref: string): boolean {
  let found = false;
  descendants(n, (x) => {
    if (found) return;
    if (ref.startsWith('this.')) found = ts.isPropertyAccessExpression(x) && x.getText() === ref;
    else found = ts.isIdentifier(x) && x.text === ref;
  });
  return found;
}

function isDisposeMethod(m: ts.ClassElement): boolean {
  return (
    ts.isMethodDeclaration(m) && ts.isComputedPropertyName(m.name) && /^Symbol\.(asyncDispose|dispose)$/.test(m.name.expression.getText())
  );
}

/** The local function (declaration or `const f = () => …`) called `name` in or around `at`. */
function localFunction(sf: ts.SourceFile, name: string): ts.Node | undefined {
  let found: ts.Node | undefined;
  descendants(sf, (x) => {
    if (found) return;
    if (ts.isFunctionDeclaration(x) && x.name?.text === name) found = x;
    else if (ts.isVariableDeclaration(x) && ts.isIdentifier(x.name) && x.name.text === name && x.initializer) {
      if (ts.isArrowFunction(x.initializer) || ts.isFunctionExpression(x.initializer)) found = x.initializer;
    }
  });
  return found;
}

export function lintSource(file: string, text: string): Finding[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const findings: Finding[] = [];

  // Classes that keep resources on `this` and release them in [Symbol.dispose](): constructing one opens.
  const disposable = new Set<string>();
  descendants(sf, (x) => {
    if (ts.isClassDeclaration(x) && x.name && x.members.some(isDisposeMethod)) disposable.add(x.name.text);
  });

  /** What `n` opens, or undefined. */
  const opening = (n: ts.Node): string | undefined => {
    if (ts.isCallExpression(n)) {
      const c = n.expression;
      if (ts.isPropertyAccessExpression(c)) {
        const m = c.name.text;
        const on = c.expression.getText(sf);
        if (m === 'open' && (on === 'Kvm' || on === 'SevPlatform')) return `${on}.open()`;
        const a0 = n.arguments[0];
        if (m === 'open' && a0 && ts.isStringLiteralLike(a0) && a0.text.startsWith('/dev/')) return `open('${a0.text}')`;
        if (OPENING_METHODS.has(m)) return `${m}()`;
        if (m === 'attach' && /(^|\.)sev$/.test(on)) return 'sev.attach()'; // the mock's SEV layer: destroy() releases
      }
      if (ts.isIdentifier(c) && OPENING_FUNCTIONS.has(c.text)) return `${c.text}()`;
    }
    if (ts.isNewExpression(n) && ts.isIdentifier(n.expression)) {
      const k = n.expression.text;
      if (k === 'Worker') return 'new Worker()';
      if (disposable.has(k)) return `new ${k}()`;
      const o = n.arguments?.[0];
      if (k === 'HybridBackend' && o && ts.isObjectLiteralExpression(o)) {
        const shared = o.properties.some((p) => p.name && ts.isIdentifier(p.name) && /^(sevService|shared)$/.test(p.name.text));
        if (shared) return 'new HybridBackend({ sevService })';
      }
    }
    return undefined;
  };

  /** `f(…, () => <n>)` where f expects its callback to throw (t.throws, or a local helper around it). */
  const expectedToThrow = (n: ts.Node): boolean => {
    const body = unwrap(n);
    const fn = body.parent;
    // t.throwsAsync(<the promise>)
    if (ts.isCallExpression(fn) && fn.arguments[0] === body && ts.isPropertyAccessExpression(fn.expression))
      return /^throws(Async)?$/.test(fn.expression.name.text);
    if (!(ts.isArrowFunction(fn) && fn.body === body) || !ts.isCallExpression(fn.parent)) return false;
    const callee = fn.parent.expression;
    if (ts.isPropertyAccessExpression(callee)) return /^throws(Async)?$/.test(callee.name.text);
    if (!ts.isIdentifier(callee)) return false;
    const helper = localFunction(sf, callee.text);
    if (!helper || !ts.isFunctionLike(helper)) return false;
    const i = fn.parent.arguments.indexOf(fn);
    const param = helper.parameters[i]?.name;
    if (!param || !ts.isIdentifier(param)) return false;
    // The helper hands its callback to t.throws(), or calls it inside a try that catches.
    let expects = false;
    descendants(helper, (x) => {
      if (ts.isCallExpression(x) && ts.isPropertyAccessExpression(x.expression) && /^throws(Async)?$/.test(x.expression.name.text))
        expects ||= x.arguments.some((a) => mentions(a, param.text));
      if (ts.isTryStatement(x) && x.catchClause) {
        descendants(x.tryBlock, (y) => {
          if (ts.isCallExpression(y) && ts.isIdentifier(y.expression) && y.expression.text === param.text) expects = true;
        });
      }
    });
    return expects;
  };

  /** Is `ref` named in a t.teardown() callback in `scope` (a callback given by name: that function's body too)? */
  const inTeardown = (scope: ts.Node, ref: string): boolean => {
    let found = false;
    descendants(scope, (x) => {
      if (found || !ts.isCallExpression(x) || !ts.isPropertyAccessExpression(x.expression)) return;
      // t.teardown(…) in a test; test.after.always(…) for what a file opens once at module level.
      const callee = x.expression;
      const afterAlways =
        callee.name.text === 'always' && ts.isPropertyAccessExpression(callee.expression) && callee.expression.name.text === 'after';
      if (callee.name.text !== 'teardown' && !afterAlways) return;
      for (const a of x.arguments) {
        if (mentions(a, ref)) found = true;
        else if (ts.isIdentifier(a)) {
          const f = localFunction(sf, a.text);
          if (f && mentions(f, ref)) found = true;
        }
      }
    });
    return found;
  };

  /** `const x = open(); try { … } finally { …x… }` */
  const finallyAfter = (decl: ts.VariableDeclaration, ref: string): boolean => {
    const stmt = decl.parent.parent;
    if (!ts.isVariableStatement(stmt) || !(ts.isBlock(stmt.parent) || ts.isSourceFile(stmt.parent))) return false;
    const list = stmt.parent.statements;
    const next = list[list.indexOf(stmt) + 1];
    return !!next && ts.isTryStatement(next) && !!next.finallyBlock && mentions(next.finallyBlock, ref);
  };

  const released = (n: ts.Node, refs: string[], decl: ts.VariableDeclaration | undefined): boolean => {
    const fieldRefs = refs.filter((r) => r.startsWith('this.'));
    if (fieldRefs.length > 0) {
      const cls = enclosingClass(n);
      const dispose = cls?.members.find(isDisposeMethod);
      return !!dispose && fieldRefs.every((r) => mentions(dispose, r));
    }
    if (decl && refs.some((r) => finallyAfter(decl, r))) return true;
    for (let s: ts.Node | undefined = enclosingFunction(n); s; s = enclosingFunction(s))
      if (refs.some((r) => inTeardown(s!, r))) return true;
    // Opened at module level: released by the file's test.after.always(…).
    return enclosingFunction(n) === undefined && refs.some((r) => inTeardown(sf, r));
  };

  const check = (n: ts.Node, what: string): void => {
    const at = unwrap(n);
    const p = at.parent;
    const report = (why: string): void => {
      findings.push({ file, line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, what, why });
    };
    // Closed at once, or expected to fail.
    if (ts.isPropertyAccessExpression(p) && p.expression === at && RELEASING_METHODS.has(p.name.text) && ts.isCallExpression(p.parent))
      return;
    if (expectedToThrow(n)) return;
    const method = what.replace(/\(\)$/, '');
    // `(await b.recvFds(s, n)).data`: a test that reads only the bytes received no fds.
    if (method === 'recvFds' && ts.isPropertyAccessExpression(p) && p.expression === at && p.name.text !== 'fds') return;

    let names: string[] | undefined;
    let decl: ts.VariableDeclaration | undefined;
    if (ts.isVariableDeclaration(p) && p.initializer === at) {
      if (p.parent.flags & ts.NodeFlags.Using) return; // `using` and `await using`
      decl = p;
      names = bindingNames(p.name);
    } else if (ts.isPropertyDeclaration(p) && p.initializer === at && ts.isIdentifier(p.name)) {
      names = [`this.${p.name.text}`]; // a class field
    } else if (ts.isBinaryExpression(p) && p.operatorToken.kind === ts.SyntaxKind.EqualsToken && p.right === at) {
      const r = refName(p.left);
      names = r ? [r] : undefined;
    } else if (
      ts.isCallExpression(p) &&
      p.arguments.includes(at as ts.Expression) &&
      ts.isPropertyAccessExpression(p.expression) &&
      p.expression.name.text === 'push'
    ) {
      const r = refName(p.expression.expression);
      names = r ? [r] : undefined;
    }
    if (!names || names.length === 0) {
      report('it is not bound to a name that is released: give it one (`using`, or t.teardown right after)');
      return;
    }

    // A Promise bound now and awaited later: `const p = b.unixAccept(l); … const s = await p;`
    const scope = enclosingFunction(n) ?? sf;
    const aliases = [...names];
    if (ASYNC_OPENERS.has(method) && !isAwaited(n)) {
      descendants(scope, (x) => {
        if (ts.isVariableDeclaration(x) && x.initializer && ts.isAwaitExpression(x.initializer)) {
          const e = x.initializer.expression;
          if (ts.isIdentifier(e) && names!.includes(e.text)) aliases.push(...bindingNames(x.name));
        }
      });
    }
    // recvFds() opens only what arrives: a test that reads only the data has nothing to release.
    if (method === 'recvFds') {
      let usesFds = false;
      descendants(scope, (x) => {
        if (ts.isPropertyAccessExpression(x) && x.name.text === 'fds' && aliases.includes(x.expression.getText(sf))) usesFds = true;
      });
      if (!usesFds) return;
    }
    const missing = names.length === 1 ? (released(n, aliases, decl) ? [] : names) : names.filter((r) => !released(n, [r], decl));
    if (missing.length > 0)
      report(`${missing.join(', ')} is not released by \`using\`, a t.teardown() that names it, or a finally right after it`);
  };

  descendants(sf, (x) => {
    const what = opening(x);
    if (what) check(x, what);
  });
  return findings;
}

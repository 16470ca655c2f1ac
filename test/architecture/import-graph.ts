/**
 * The import graph of lib/: each file's relative imports (static, type-only, dynamic and
 * `new URL(…, import.meta.url)`), read from the TypeScript sources.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

export interface ImportEdge {
  from: string; // 'lib/kvm/vm.ts'
  to: string; // 'lib/uapi/ioctls.ts'
  spec: string;
  dynamic: boolean;
}

export function sourceFiles(root: string, dir = 'lib'): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, dir))) {
    const p = join(dir, e);
    if (statSync(join(root, p)).isDirectory()) out.push(...sourceFiles(root, p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

const IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|\bnew URL\(\s*|^\s*import\s+|\bexport\s+\*\s+from\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm;

export function importEdges(root: string, files: string[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const from of files) {
    const src = readFileSync(join(root, from), 'utf8');
    for (const m of src.matchAll(IMPORT)) {
      const spec = m[2]!;
      const abs = resolve(root, dirname(from), spec).replace(/\.js$/, '.ts');
      const dynamic = !m[0].includes('from') && !/^\s*import\s+['"]/.test(m[0]);
      edges.push({ from, to: relative(root, abs), spec, dynamic });
    }
  }
  return edges;
}

/** Strongly connected components of more than one node (Tarjan). */
export function cycles(nodes: Iterable<string>, next: (n: string) => Iterable<string>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const n of nodes) if (!idx.has(n)) visit(n);
  return out;
}

/**
 * File descriptors of a mock host: kernel "files" (the objects an fd refers to) with reference
 * counts, and per-host fd tables with numbers from 3 upward (the lowest free one, as open(2) does).
 * A file is released when the last fd referring to it closes (fds handed over a mock socket are
 * further references). A {@link MockFd} dropped without close() is closed by a FinalizationRegistry.
 */
import type { BackendFd, FdKind } from '../../../../backend/contract.js';

export abstract class KernelFile {
  abstract readonly kind: FdKind;
  abstract readonly path: string;
  readonly writable: boolean = true;
  private refs = 0;

  get(): void {
    this.refs++;
  }

  put(): void {
    if (--this.refs === 0) this.release();
  }

  get open(): boolean {
    return this.refs > 0;
  }

  /** The last reference went away. */
  protected abstract release(): void;
}

interface Held {
  readonly table: FdTable;
  readonly num: number;
  readonly file: KernelFile;
}

const finalizer = new FinalizationRegistry<Held>((h) => h.table.closeNumber(h.num, h.file));

/** A user-side fd: what the Backend contract calls a BackendFd. */
export class MockFd implements BackendFd {
  /** @internal */
  readonly table: FdTable;
  private num: number;
  private file: KernelFile | undefined;

  /** @internal use FdTable.install */
  constructor(table: FdTable, num: number, file: KernelFile) {
    this.table = table;
    this.num = num;
    this.file = file;
    finalizer.register(this, { table, num, file }, this);
  }

  get kind(): FdKind | 'closed' {
    return this.file ? this.file.kind : 'closed';
  }
  get fd(): number {
    return this.file ? this.num : -1;
  }
  get closed(): boolean {
    return !this.file;
  }
  get writable(): boolean {
    return this.file?.writable ?? false;
  }
  get path(): string | undefined {
    return this.file?.path;
  }

  /** @internal the open file, or undefined once closed. */
  get kernelFile(): KernelFile | undefined {
    return this.file;
  }

  close(): void {
    const f = this.file;
    if (!f) return;
    this.file = undefined;
    finalizer.unregister(this);
    this.table.closeNumber(this.num, f);
  }
}

export class FdTable {
  private readonly files = new Map<number, KernelFile>();

  /** A new fd for `file` (takes a reference). */
  install(file: KernelFile): MockFd {
    let n = 3;
    while (this.files.has(n)) n++;
    file.get();
    this.files.set(n, file);
    return new MockFd(this, n, file);
  }

  lookup(num: number): KernelFile | undefined {
    return this.files.get(num);
  }

  /** close(2) of a number, if it still refers to `file`. */
  closeNumber(num: number, file: KernelFile): void {
    if (this.files.get(num) !== file) return;
    this.files.delete(num);
    file.put();
  }

  /** Open fds (diagnostics, tests). */
  get size(): number {
    return this.files.size;
  }
}

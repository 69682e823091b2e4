// What `magicdec gen` writes: a module directory holding the backend's sources plus manifest.json.
// Everything is rendered in memory first; the directory is then written beside the target and swapped
// into place, so a failure at any point (diagnostics, a backend error, a full disk) leaves the previous
// output exactly as it was.
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, posix, resolve } from 'node:path';
import type { Backend, EmittedFile } from './backend.ts';
import { manifestText } from './manifest.ts';
import type { ModulePlan } from './plan.ts';

export const MANIFEST_FILE = 'manifest.json';

/** Refusal to write or replace a directory (bad --out), as opposed to an internal error. */
export class ModuleWriteError extends Error {}

/** The backend's sources and the manifest, sorted by path; checks that every path stays inside the module. */
export function renderModule(plan: ModulePlan, backend: Backend): EmittedFile[] {
  const files = [...backend.emit(plan), { path: MANIFEST_FILE, contents: manifestText(plan) }];
  checkPaths(files, `backend '${backend.name}'`);
  return files.sort((a, b) => comparePaths(a.path, b.path));
}

export interface WrittenModule {
  readonly dir: string;
  readonly files: readonly EmittedFile[];
}

/** Render `plan` with `backend` and write it to `outDir` (replacing a previous module there). */
export function writeModule(plan: ModulePlan, backend: Backend, outDir: string): WrittenModule {
  const files = renderModule(plan, backend);
  writeTree(outDir, files, isModuleDir);
  return { dir: resolve(outDir), files };
}

/** An empty directory, or one holding a manifest.json: safe to replace with a new module. */
export function isModuleDir(dir: string): boolean {
  const entries = readdirSync(dir);
  return entries.length === 0 || entries.includes(MANIFEST_FILE);
}

/**
 * Write `files` as the complete contents of `outDir`. An existing `outDir` is replaced only when
 * `mayReplace(outDir)` says so; this is what keeps `--out .` from deleting a checkout.
 * The new tree is written to a temporary sibling and renamed into place; the old one is renamed aside
 * first and restored if the second rename fails (POSIX has no atomic exchange of two directories).
 */
export function writeTree(outDir: string, files: readonly EmittedFile[], mayReplace: (dir: string) => boolean): void {
  checkPaths(files, 'writeTree');
  const target = resolve(outDir);
  checkReplaceable(target, mayReplace);
  try {
    replaceTree(target, files);
  } catch (e) {
    // The file system refused (a parent that is a file, a read-only or pseudo file system, no space):
    // the user's to fix, named in one line. Nothing half-written stays: replaceTree cleans up first.
    const why = fsErrorText(e);
    if (why === undefined) throw e;
    throw new ModuleWriteError(`cannot write ${outDir}: ${why}`);
  }
}

/** `syscall path: CODE (meaning)` for an error the file system raised; undefined for anything else. */
export function fsErrorText(e: unknown): string | undefined {
  const err = e as NodeJS.ErrnoException;
  if (typeof err?.code !== 'string' || !/^E[A-Z]+$/.test(err.code)) return undefined;
  return `${err.syscall ?? 'access'}${err.path ? ` ${err.path}` : ''}: ${err.code}${describeErrno(err.code)}`;
}

function describeErrno(code: string): string {
  const what: Record<string, string> = {
    EEXIST: 'a file is in the way',
    ENOTDIR: 'a parent is not a directory',
    ENOENT: 'no such file or directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOSPC: 'no space left on device',
  };
  return what[code] ? ` (${what[code]})` : '';
}

function replaceTree(target: string, files: readonly EmittedFile[]): void {
  const parent = dirname(target);
  mkdirSync(parent, { recursive: true });
  const tmp = mkdtempSync(join(parent, `.${basename(target)}.tmp-`));
  try {
    // mkdtemp creates 0700; the module is an ordinary output directory.
    chmodSync(tmp, 0o755);
    for (const f of files) {
      mkdirSync(dirname(join(tmp, f.path)), { recursive: true });
      writeFileSync(join(tmp, f.path), f.contents);
    }
    if (!existsSync(target)) {
      renameSync(tmp, target);
      return;
    }
    const old = mkdtempSync(join(parent, `.${basename(target)}.old-`));
    const aside = join(old, 'previous');
    renameSync(target, aside);
    try {
      renameSync(tmp, target);
    } catch (e) {
      renameSync(aside, target);
      rmSync(old, { recursive: true, force: true });
      throw e;
    }
    rmSync(old, { recursive: true, force: true });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Throws a ModuleWriteError when `dir` exists and must not be replaced; call before any expensive work. */
export function checkReplaceable(dir: string, mayReplace: (dir: string) => boolean = isModuleDir): void {
  const target = resolve(dir);
  if (!existsSync(target)) return;
  if (!lstatSync(target).isDirectory()) throw new ModuleWriteError(`output path ${dir} exists and is not a directory`);
  if (!mayReplace(target)) {
    throw new ModuleWriteError(
      `output directory ${dir} is not empty and holds no ${MANIFEST_FILE}; refusing to replace it (choose another --out)`,
    );
  }
}

/** Every file under `dir` (dotfiles included) with its contents, sorted by path; [] when `dir` is absent. */
export function readTree(dir: string): EmittedFile[] {
  if (!existsSync(dir)) return [];
  const out: EmittedFile[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(p);
      else out.push({ path: p, contents: readFileSync(join(dir, p), 'utf8') });
    }
  };
  walk('');
  return out.sort((a, b) => comparePaths(a.path, b.path));
}

/** Byte order, not locale order: the same on every machine. */
export function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function checkPaths(files: readonly EmittedFile[], who: string): void {
  const seen = new Set<string>();
  for (const f of files) {
    const norm = posix.normalize(f.path);
    if (!f.path || norm !== f.path || posix.isAbsolute(f.path) || norm.startsWith('../') || norm === '..' || f.path.includes('\\')) {
      throw new Error(`${who}: file path '${f.path}' is not a normalised relative path inside the module`);
    }
    if (seen.has(f.path)) throw new Error(`${who}: file '${f.path}' is emitted twice`);
    seen.add(f.path);
  }
}

// codegen/module.ts: the output directory is replaced as a whole or not at all, and never when it is not
// a module directory.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkReplaceable, isModuleDir, ModuleWriteError, readTree, writeTree } from '../../codegen/module.ts';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'magicdec-module-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const files = (tag: string) => [
  { path: 'manifest.json', contents: `{"tag":"${tag}"}\n` },
  { path: 'src/a.cpp', contents: `// ${tag}\n` },
];

describe('writeTree', () => {
  it('creates the directory and its parents, and leaves no temporary siblings', () => {
    const out = join(root, 'a/b/mod');
    writeTree(out, files('one'), isModuleDir);
    expect(readTree(out)).toEqual(files('one'));
    expect(readdirSync(join(root, 'a/b'))).toEqual(['mod']);
    expect(statSync(out).mode & 0o777).toBe(0o755);
  });

  it('replaces a previous module completely (stale files disappear)', () => {
    const out = join(root, 'mod');
    writeTree(out, [...files('one'), { path: 'old.cu', contents: 'x' }], isModuleDir);
    writeTree(out, files('two'), isModuleDir);
    expect(readTree(out)).toEqual(files('two'));
    expect(readdirSync(root)).toEqual(['mod']);
  });

  it('refuses to replace a non-empty directory without manifest.json, and leaves it untouched', () => {
    const out = join(root, 'precious');
    mkdirSync(out);
    writeFileSync(join(out, 'notes.txt'), 'keep me');
    expect(() => writeTree(out, files('one'), isModuleDir)).toThrow(ModuleWriteError);
    expect(() => checkReplaceable(out)).toThrow(/holds no manifest.json; refusing to replace it/);
    expect(readTree(out)).toEqual([{ path: 'notes.txt', contents: 'keep me' }]);
    expect(readdirSync(root)).toEqual(['precious']);
  });

  it('refuses a path that is a file', () => {
    const out = join(root, 'file');
    writeFileSync(out, 'x');
    expect(() => writeTree(out, files('one'), isModuleDir)).toThrow(/exists and is not a directory/);
  });

  it.each([
    ['below a regular file', (r: string) => join(r, 'file/sub'), /cannot write .*file\/sub: mkdir .*file: EEXIST \(a file is in the way\)$/],
    ['in a pseudo file system', () => '/proc/magicdec-out', /cannot write \/proc\/magicdec-out: mkdtemp .*: ENOENT/],
  ])('refuses an output path %s with one line naming the path and the OS error', (_what, path, message) => {
    writeFileSync(join(root, 'file'), 'x');
    const out = path(root);
    let err: unknown;
    try {
      writeTree(out, files('one'), isModuleDir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ModuleWriteError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
    expect(readdirSync(root)).toEqual(['file']);
  });

  it('accepts an empty existing directory', () => {
    const out = join(root, 'empty');
    mkdirSync(out);
    writeTree(out, files('one'), isModuleDir);
    expect(readTree(out)).toEqual(files('one'));
  });

  it.each(['../escape.cpp', '/abs.cpp', 'a/../b.cpp', './a.cpp', ''])('rejects the path %j before writing anything', (p) => {
    const out = join(root, 'mod');
    expect(() => writeTree(out, [{ path: p, contents: '' }], isModuleDir)).toThrow(/not a normalised relative path/);
    expect(existsSync(out)).toBe(false);
  });

  it('rejects a path emitted twice', () => {
    expect(() => writeTree(join(root, 'mod'), [...files('a'), ...files('b')], isModuleDir)).toThrow(/emitted twice/);
  });
});

describe('readTree', () => {
  it('lists dotfiles and nested files in byte order', () => {
    const out = join(root, 'mod');
    writeTree(out, [{ path: 'b/Z.h', contents: '1' }, { path: '.x', contents: '2' }, { path: 'B.h', contents: '3' }], () => true);
    expect(readTree(out).map((f) => f.path)).toEqual(['.x', 'B.h', 'b/Z.h']);
  });

  it('is empty for a missing directory', () => {
    expect(readTree(join(root, 'none'))).toEqual([]);
  });
});

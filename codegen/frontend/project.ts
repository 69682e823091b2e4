// One ts-morph Project per process, with compiler options equivalent to tsconfig.json. The magicdec DSL
// files stay in it across calls (their ASTs and bindings are reused by every new program), while each
// spec and the user modules it imports are added for one call and removed after it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Project, ts, type SourceFile } from 'ts-morph';

/** This package's dsl/ directory (what `import 'magicdec'` resolves to inside the repository). */
export const DSL_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dsl');

const COMPILER_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  allowImportingTsExtensions: true,
  noEmit: true,
  strict: true,
  esModuleInterop: true,
  skipLibCheck: true,
  resolveJsonModule: true,
  // Specs need neither DOM nor Node types; leaving them out keeps a check at tens of milliseconds.
  types: [],
  lib: ['lib.es2022.d.ts'],
};

let shared: Project | undefined;

export function sharedProject(): Project {
  if (!shared) {
    shared = new Project({ compilerOptions: COMPILER_OPTIONS, skipAddingFilesFromTsConfig: true });
    for (const f of fs.readdirSync(DSL_DIR)) if (f.endsWith('.ts')) shared.addSourceFileAtPath(path.join(DSL_DIR, f));
  }
  return shared;
}

/** Files the spec session added (the spec and its imports outside dsl/), to remove when it ends. */
export function sessionFiles(project: Project, keep: ReadonlySet<string>): SourceFile[] {
  return project.getSourceFiles().filter((sf) => !keep.has(sf.getFilePath()));
}

/** Paths of the persistent files (dsl/), so they survive the end of a session. */
export function persistentPaths(project: Project): Set<string> {
  return new Set(project.getSourceFiles().filter((sf) => isInside(sf.getFilePath(), DSL_DIR)).map((sf) => sf.getFilePath()));
}

export function isInside(file: string, dir: string): boolean {
  const rel = path.relative(dir, file);
  return !!rel && !rel.startsWith('..') && !path.isAbsolute(rel);
}

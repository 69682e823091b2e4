// The front end: a spec module (`import { ... } from 'magicdec'; export default deploy({...})`) to a
// DeploymentIR, statically — ts-morph parses and type-checks it, the partial evaluator computes the deploy
// value, and the DSL functions are lowered to IR. User code is never executed. All problems come back as
// diagnostics (never exceptions), all of them, not just the first.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Node as TsNode, SyntaxKind, ts, type Project, type SourceFile } from 'ts-morph';
import type * as ir from '../ir.ts';
import type { DeploymentIR, FnKind } from '../spec.ts';
import { attentionCall, deployCall, kvPolicyCall, verifierCall, type DescriptorContext } from './descriptors.ts';
import { diagAt, diagAtNode, diagAtText, diagNoSpan, displayPath, DiagnosticSink, type Code, type Diagnostic } from './diagnostics.ts';
import { Evaluator, type EvalContext } from './evaluate.ts';
import { lowerFunction } from './lower.ts';
import { DSL_DIR, isInside, persistentPaths, sharedProject } from './project.ts';
import { checkSpecText, checkSpecTree, isStackOverflow, type SizeProblem } from './size.ts';
import { DescriptorVal, Env, FnVal, kindOf, POISON, type Value } from './values.ts';

export { CODES, formatDiagnostic, type Code, type Diagnostic } from './diagnostics.ts';

export interface LoadResult {
  /** Present exactly when there are no diagnostics. */
  deployment?: DeploymentIR;
  diagnostics: Diagnostic[];
}

const DEFAULT_SPEC = path.join(DSL_DIR, 'default.ts');

/** Load a spec file; with no file, the built-in default deployment (dsl/default.ts, source '<default>'). */
export function loadSpec(file?: string): LoadResult {
  if (file === undefined) return result(withSession(DEFAULT_SPEC, undefined, '<default>', run));
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'it is a directory' : err.message;
    return { diagnostics: [diagNoSpan('MD1001', `cannot read spec '${file}': ${why}`, abs)] };
  }
  return result(withSession(abs, text, displayPath(abs), run));
}

function result(r: { value?: DeploymentIR; diagnostics: Diagnostic[] }): LoadResult {
  return r.value && !r.diagnostics.length ? { deployment: r.value, diagnostics: [] } : { diagnostics: r.diagnostics };
}

/** Load a spec from text, as if it were the file `file` (imports resolve relative to it). For tests and editors. */
export function loadSpecText(text: string, file: string): LoadResult {
  const abs = path.resolve(file);
  return result(withSession(abs, text, displayPath(abs), run));
}

/**
 * Lower one function's source (e.g. `(q, kv, p) => kv <= q && q - kv < p.window`) as a `kind` function,
 * with the given params. Only lowering diagnostics are reported (no type check). For tests and tools.
 */
export function lowerFunctionSource(
  kind: FnKind,
  source: string,
  opts: { params?: Readonly<Record<string, number>>; const?: boolean } = {},
): { node?: ir.Node; diagnostics: Diagnostic[] } {
  const file = path.join(DSL_DIR, '..', '__lower_function__.ts');
  const text = `export const fn = ${source};\n`;
  const out = withSession(file, text, '<function>', (s) => {
    const decl = s.sf.getVariableDeclaration('fn');
    const init = decl?.getInitializer();
    const syntax = s.project.getProgram().getSyntacticDiagnostics(s.sf);
    if (syntax.length) {
      for (const d of syntax) s.sink.add(tsDiagnostic(d.compilerObject, s.sf));
      return undefined;
    }
    if (!init) return undefined;
    const v = s.ev.eval(init, new Env());
    if (!(v instanceof FnVal)) {
      if (v !== POISON) s.report('MD1203', `expected a function, got ${kindOf(v)}`, init);
      return undefined;
    }
    const params = Object.entries(opts.params ?? {}).map(([name, value]) => ({ name, value, ty: Number.isInteger(value) && Math.abs(value) < 2 ** 31 ? ('i32' as const) : ('f32' as const) }));
    return lowerFunction(v, kind, { params, const: opts.const ?? false }, s.ev, s.report);
  });
  return { ...(out.value && !out.diagnostics.length ? { node: out.value } : {}), diagnostics: out.diagnostics };
}

// ------------------------------------------------------------------------------------------ sessions

interface Session {
  readonly project: Project;
  readonly sf: SourceFile;
  readonly sink: DiagnosticSink;
  readonly ev: Evaluator;
  readonly source: string;
  /** Where problems inside dsl/ are shown when no user call led to them (the default export). */
  anchor: TsNode;
  report(code: Code, message: string, node: TsNode): void;
}

/**
 * Add the spec to the shared project, run `body`, and remove the spec and the user modules it pulled in
 * (the dsl/ files stay). Unexpected exceptions become an MD1004 diagnostic rather than escaping.
 */
function withSession<T>(abs: string, text: string | undefined, source: string, body: (s: Session) => T): { value?: T; diagnostics: Diagnostic[] } {
  const project = sharedProject();
  const keep = persistentPaths(project);
  const sink = new DiagnosticSink();
  try {
    let sf: SourceFile;
    const existing = project.getSourceFile(abs);
    if (keep.has(abs) && existing) {
      sf = existing;
      if (text !== undefined && text !== sf.getFullText()) {
        sink.add(diagNoSpan('MD1001', `'${source}' is a file of the magicdec DSL itself; give a spec of your own`, abs));
        return { diagnostics: sink.list };
      }
    } else {
      const tooBig = checkSpecText(text ?? '');
      if (tooBig) return { diagnostics: [sizeDiagnostic(tooBig, abs, text ?? '')] };
      sf = project.createSourceFile(abs, text ?? '', { overwrite: true });
    }
    project.resolveSourceFileDependencies();
    // Every user file (the spec and what it imports) within bounds before the checker recurses over it.
    for (const f of project.getSourceFiles()) {
      if (keep.has(f.getFilePath()) || f.isDeclarationFile() || f.isInNodeModules()) continue;
      const problem = checkSpecTree(f.compilerNode);
      if (problem) sink.add(sizeDiagnostic(problem, f.getFilePath(), f.getFullText()));
    }
    if (sink.list.length) return { diagnostics: sorted(sink.list) };

    const dslDirs = new Set([DSL_DIR]);
    const resolved = ts.resolveModuleName('magicdec', abs, project.getCompilerOptions(), project.getModuleResolutionHost()).resolvedModule;
    if (resolved) dslDirs.add(path.dirname(resolved.resolvedFileName));
    const inDsl = (f: SourceFile) => f !== sf && [...dslDirs].some((d) => isInside(f.getFilePath(), d));

    const evCtx: EvalContext & DescriptorContext = {
      get checker() {
        return project.getTypeChecker();
      },
      get ev() {
        return ev;
      },
      specDir: path.dirname(abs),
      report: (code, message, node) => session.report(code, message, node),
      errorCount: () => sink.list.length,
      primitiveOf: (decl) => {
        if (!TsNode.isFunctionDeclaration(decl)) return undefined;
        const file = decl.getSourceFile().getFilePath();
        const name = decl.getName();
        for (const d of dslDirs) {
          if (file === path.join(d, 'core.ts') && (name === 'attention' || name === 'kvPolicy' || name === 'verifier')) return name;
          if (file === path.join(d, 'deploy.ts') && name === 'deploy') return name;
        }
        return undefined;
      },
      callPrimitive: (name, args, call) => {
        switch (name) {
          case 'attention':
            return attentionCall(evCtx, args, call);
          case 'kvPolicy':
            return kvPolicyCall(evCtx, args, call);
          case 'verifier':
            return verifierCall(evCtx, args, call);
          case 'deploy':
            return deployCall(evCtx, args, call);
        }
      },
    };
    const ev = new Evaluator(evCtx);
    const session: Session = {
      project,
      sf,
      sink,
      ev,
      source,
      anchor: sf,
      report(code, message, node) {
        // Problems found inside dsl/ (a preset's body, say) are shown at the user's call that led there.
        let at = node;
        if (inDsl(node.getSourceFile())) {
          const user = [...ev.callStack].reverse().find((c) => !inDsl(c.getSourceFile()));
          at = user ?? session.anchor;
        }
        sink.add(at === sf ? diagAt(code, message, sf, 0, 0) : diagAtNode(code, message, at));
      },
    };

    if (source !== '<function>') {
      const program = project.getProgram().compilerObject;
      for (const f of project.getSourceFiles()) {
        if (f.isDeclarationFile() || inDsl(f) || f.isInNodeModules()) continue;
        const diags = [...program.getSyntacticDiagnostics(f.compilerNode), ...program.getSemanticDiagnostics(f.compilerNode)];
        for (const d of diags) if (d.category === ts.DiagnosticCategory.Error) sink.add(tsDiagnostic(d, f));
      }
    }
    const value = body(session);
    return { value, diagnostics: sorted(sink.list) };
  } catch (e) {
    const err = e as Error;
    if (isStackOverflow(e)) {
      sink.add(diagNoSpan('MD1005', 'the spec is nested too deeply for the compiler (it ran out of stack); simplify the nested expressions or imports', abs));
      return { diagnostics: sorted(sink.list) };
    }
    sink.add(diagNoSpan('MD1004', `internal compiler error while reading this spec: ${err?.message ?? String(e)} (please report it)`, abs));
    return { diagnostics: sorted(sink.list) };
  } finally {
    for (const f of project.getSourceFiles()) if (!keep.has(f.getFilePath())) project.removeSourceFile(f);
  }
}

function sizeDiagnostic(p: SizeProblem, file: string, text: string): Diagnostic {
  return p.pos === undefined ? diagNoSpan(p.code, p.message, file) : diagAtText(p.code, p.message, file, text, p.pos, p.length ?? 1);
}

function run(s: Session): DeploymentIR | undefined {
  const sym = s.sf.getDefaultExportSymbol();
  const decl = sym?.getDeclarations()[0];
  if (!sym || !decl) {
    s.report('MD1002', "the spec has no default export; end it with 'export default deploy({ ... })'", s.sf);
    return undefined;
  }
  let value: Value;
  let at: TsNode = decl;
  if (TsNode.isExportAssignment(decl)) {
    at = decl.getExpression();
    s.anchor = at;
    value = s.ev.eval(at, new Env());
  } else if (TsNode.isExportSpecifier(decl)) {
    const target = (sym.getAliasedSymbol() ?? sym).getValueDeclaration();
    value = target ? s.ev.declValue(target, decl, new Env()) : POISON;
  } else {
    value = POISON;
    s.report('MD1003', "the default export must be a deploy({ ... }) value, e.g. 'export default deploy({ ... })'", decl.getFirstChildByKind(SyntaxKind.DefaultKeyword) ?? decl);
  }
  if (value === POISON) return undefined;
  if (!(value instanceof DescriptorVal) || value.kind !== 'deploy') {
    s.report('MD1003', `the default export must be a deploy({ ... }) value, not ${kindOf(value)}`, at);
    return undefined;
  }
  if (!value.ir || s.sink.list.length) return undefined;
  return { ...(value.ir as Omit<DeploymentIR, 'source'>), source: s.source };
}

function tsDiagnostic(d: ts.Diagnostic, fallback: SourceFile): Diagnostic {
  const message = ts
    .flattenDiagnosticMessageText(d.messageText, '\n')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' ');
  if (d.file && d.start !== undefined) {
    const sf = fallback.getProject().getSourceFile(d.file.fileName) ?? fallback;
    return diagAt('MD1000', message, sf, d.start, d.length ?? 0);
  }
  return diagNoSpan('MD1000', message, fallback.getFilePath());
}

function sorted(ds: Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
}

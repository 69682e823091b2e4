// Diagnostics as data: a stable code, a message that says what is accepted instead, and the source span.
// Every code the front end can emit is listed in CODES and documented (with an example) in docs/DSL.md.
import * as path from 'node:path';
import type { Node as TsNode, SourceFile } from 'ts-morph';

export interface Diagnostic {
  /** Stable code, 'MD1xxx'. */
  code: string;
  message: string;
  /** Path relative to the working directory when inside it, else absolute. */
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based, in characters. */
  col: number;
  /** Span length in characters (at least 1 when shown). */
  length: number;
  /** The full text of the line the span starts on. */
  sourceLine: string;
}

/** Every diagnostic code, with a one-line summary (the long form with examples lives in docs/DSL.md). */
export const CODES = {
  MD1000: 'TypeScript error in the spec',
  MD1001: 'spec file cannot be read',
  MD1002: 'spec has no default export',
  MD1003: 'default export is not a deploy(...) value',
  MD1004: 'internal compiler error',
  MD1005: 'spec too large or nested too deeply',
  // static evaluation of the deploy(...) value
  MD1101: 'expression cannot be evaluated statically',
  MD1102: 'identifier is not bound to a const',
  MD1103: 'property or element does not exist',
  MD1104: 'callee is not a function the front end can evaluate',
  MD1105: 'statement not supported in an evaluated function',
  MD1106: 'recursion too deep or cyclic const',
  MD1107: 'operator not supported or applied to the wrong kind of value',
  // DSL descriptors: attention / kvPolicy / verifier / deploy arguments
  MD1201: 'invalid name',
  MD1202: 'missing required field',
  MD1203: 'field has the wrong kind of value',
  MD1204: 'invalid param',
  MD1205: 'sample verifier without accept/residual',
  // deployment validation
  MD1301: 'invalid gamma',
  MD1302: 'invalid batch buckets',
  MD1303: 'invalid pageSize',
  MD1304: 'invalid maxSeq',
  MD1305: 'invalid dtype',
  MD1306: 'invalid arch',
  MD1307: 'invalid model',
  MD1308: 'target pass is not causal',
  // lowering of mask / score / keep / accept / residual to IR
  MD1401: 'syntax not accepted in a kernel function',
  MD1402: 'too many parameters',
  MD1403: 'parameter is not a plain identifier',
  MD1404: 'unknown Math member or wrong arity',
  MD1405: 'unknown param name',
  MD1406: 'closure value is not a number or boolean',
  MD1407: 'operand types do not fit the operator',
  MD1408: 'function returns the wrong type',
  MD1409: 'missing return or unreachable code',
  MD1410: 'call not accepted in a kernel function',
  MD1411: 'the params object used as a value',
  MD1412: 'statement not accepted in a kernel function',
} as const;

export type Code = keyof typeof CODES;

export function displayPath(file: string): string {
  if (file.startsWith('<')) return file;
  const rel = path.relative(process.cwd(), file);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : file;
}

/** A diagnostic at [start, start + length) of `sf` (positions are 0-based character offsets). */
export function diagAt(code: Code, message: string, sf: SourceFile, start: number, length: number): Diagnostic {
  return diagAtText(code, message, sf.getFilePath(), sf.getFullText(), start, length);
}

/** A diagnostic at [start, start + length) of `text`, the contents of `file` (before it is parsed). */
export function diagAtText(code: Code, message: string, file: string, text: string, start: number, length: number): Diagnostic {
  const s = Math.max(0, Math.min(start, text.length));
  const lineStart = text.lastIndexOf('\n', s - 1) + 1;
  let lineEnd = text.indexOf('\n', s);
  if (lineEnd < 0) lineEnd = text.length;
  const line = text.slice(0, lineStart).split('\n').length;
  return {
    code,
    message,
    file: displayPath(file),
    line,
    col: s - lineStart + 1,
    length: Math.max(0, length),
    sourceLine: text.slice(lineStart, lineEnd).replace(/\r$/, ''),
  };
}

export function diagAtNode(code: Code, message: string, node: TsNode): Diagnostic {
  const start = node.getStart();
  return diagAt(code, message, node.getSourceFile(), start, node.getEnd() - start);
}

/** A diagnostic with no source position (e.g. an unreadable file). */
export function diagNoSpan(code: Code, message: string, file: string): Diagnostic {
  return { code, message, file: displayPath(file), line: 1, col: 1, length: 0, sourceLine: '' };
}

/** Characters of a source line shown under a diagnostic. */
const SHOWN_LINE = 120;

/** "file:line:col: error MD1203: message", the source line, and a caret under the span. */
export function formatDiagnostic(d: Diagnostic): string {
  const head = `${d.file}:${d.line}:${d.col}: error ${d.code}: ${d.message}`;
  if (!d.sourceLine) return head;
  let src = d.sourceLine.replace(/\t/g, ' ');
  let col = d.col;
  // A very long line (generated or hostile code) is shown as a window around the span.
  if (src.length > SHOWN_LINE) {
    const from = Math.max(0, Math.min(col - 1 - SHOWN_LINE / 2, src.length - SHOWN_LINE));
    const left = from > 0 ? '…' : '';
    src = `${left}${src.slice(from, from + SHOWN_LINE)}${from + SHOWN_LINE < src.length ? '…' : ''}`;
    col = col - from + left.length;
  }
  const width = Math.max(1, Math.min(d.length, src.length - (col - 1)));
  return `${head}\n  ${src}\n  ${' '.repeat(col - 1)}${'^'.repeat(width)}`;
}

/**
 * Collects diagnostics. One problem is reported once: a diagnostic identical to an earlier one (reached by
 * two paths), or one on exactly the span of a TypeScript error (MD1000, added first), is dropped.
 */
export class DiagnosticSink {
  readonly list: Diagnostic[] = [];
  private readonly seen = new Set<string>();
  private readonly tsSpans = new Set<string>();

  add(d: Diagnostic): void {
    const span = `${d.file}|${d.line}|${d.col}|${d.length}`;
    const key = `${d.code}|${span}|${d.message}`;
    if (this.seen.has(key) || (d.code !== 'MD1000' && this.tsSpans.has(span))) return;
    this.seen.add(key);
    if (d.code === 'MD1000') this.tsSpans.add(span);
    this.list.push(d);
  }
}

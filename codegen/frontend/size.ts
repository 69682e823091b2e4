// Bounds on the size and nesting of a spec, checked before the TypeScript checker or the evaluator sees
// it: both recurse over the syntax tree, so a hostile spec (a 20000-deep parenthesis, a 64K-term sum)
// would otherwise exhaust the stack or run for minutes. Real specs are far below every limit.
import { ts } from 'ts-morph';
import type { Code } from './diagnostics.ts';

/** Bytes of one spec file. */
export const MAX_SPEC_BYTES = 1 << 20;
/** Brackets ((, [, {) open at once, and syntax-tree depth: what the recursive passes can take. */
export const MAX_NESTING = 128;
/** Syntax nodes of one spec file. */
export const MAX_SPEC_NODES = 50_000;

export interface SizeProblem {
  readonly code: Code;
  readonly message: string;
  /** Offset into the text, or undefined for the whole file. */
  readonly pos?: number;
  readonly length?: number;
}

/**
 * A cheap scan of the text, before it is parsed (the parser itself recurses on brackets): the file size
 * and bracket depth, outside comments, strings and template literals' text.
 */
export function checkSpecText(text: string): SizeProblem | undefined {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_SPEC_BYTES) return { code: 'MD1005', message: `the spec is ${bytes} bytes, over the limit of ${MAX_SPEC_BYTES}` };
  let depth = 0;
  // Operators the parser recurses on, in one expression: conditionals (either branch) and '<' (each may
  // open a type-argument list it tries first). An expression ends at ; , { or } for this count.
  let conditionals = 0;
  let angles = 0;
  // Prefix operators in a row (`!!!x`, `- - -x`): the parser recurses on each one too.
  let prefixRun = 0;
  let prev = '';  // the last character that is not white space, outside comments and strings
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ';' || c === ',' || c === '{' || c === '}') conditionals = angles = 0;
    if (/\s/.test(c)) continue;
    const unary = c === '!' || c === '~' || ((c === '-' || c === '+') && (prev === '' || /[-+*/%!~<>=&|^?:(,[{]/.test(prev)));
    if (unary && text[i + 1] !== '=') {
      if (++prefixRun > MAX_NESTING) return { code: 'MD1005', message: `more prefix operators in a row than the limit of ${MAX_NESTING}`, pos: i, length: 1 };
    } else if (c !== '/') {
      prefixRun = 0;
    }
    prev = c;
    if (c === '/' && text[i + 1] === '/') {
      i = text.indexOf('\n', i);
      if (i < 0) break;
    } else if (c === '/' && text[i + 1] === '*') {
      i = text.indexOf('*/', i + 2);
      if (i < 0) break;
      i++;
    } else if (c === '"' || c === "'" || c === '`') {
      // Skip to the closing quote (a template's ${...} counts as text: it is not where hostile depth hides).
      for (i++; i < text.length && text[i] !== c && !(c !== '`' && text[i] === '\n'); i++) if (text[i] === '\\') i++;
    } else if (c === '(' || c === '[' || c === '{') {
      if (++depth > MAX_NESTING) return { code: 'MD1005', message: `brackets nested deeper than the limit of ${MAX_NESTING}`, pos: i, length: 1 };
    } else if (c === '?' && text[i + 1] !== '?' && text[i - 1] !== '?' && !(text[i + 1] === '.' && !/[0-9]/.test(text[i + 2] ?? ''))) {
      if (++conditionals > MAX_NESTING) return { code: 'MD1005', message: `more conditional (?:) operators in one expression than the limit of ${MAX_NESTING}`, pos: i, length: 1 };
    } else if (c === '<' && text[i + 1] !== '<' && text[i - 1] !== '<') {
      if (++angles > MAX_NESTING) return { code: 'MD1005', message: `more '<' operators in one expression than the limit of ${MAX_NESTING}`, pos: i, length: 1 };
    }
    if (c === ')' || c === ']' || c === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  return undefined;
}

/** An iterative walk of a parsed file: node count and syntax-tree depth (a long `a + b + ...` chain is deep). */
export function checkSpecTree(sf: ts.SourceFile): SizeProblem | undefined {
  let nodes = 0;
  const stack: { node: ts.Node; depth: number }[] = [{ node: sf, depth: 0 }];
  while (stack.length) {
    const { node, depth } = stack.pop()!;
    if (++nodes > MAX_SPEC_NODES) return { code: 'MD1005', message: `the spec has more syntax nodes than the limit of ${MAX_SPEC_NODES}` };
    if (depth > MAX_NESTING) {
      const pos = node.getStart(sf);
      return { code: 'MD1005', message: `expression nested deeper than the limit of ${MAX_NESTING} levels (a chain of that many operators is that deep)`, pos, length: Math.max(1, Math.min(node.getEnd(), pos + 40) - pos) };
    }
    ts.forEachChild(node, (child) => {
      stack.push({ node: child, depth: depth + 1 });
    });
  }
  return undefined;
}

/** Whether `e` is V8's stack overflow: a last line of defence, reported as MD1005 rather than as a bug. */
export function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && /call stack size/i.test(e.message);
}

// The compiler's strict JSON for model files, the twin of the runtime's runtime/src/json.cpp: the same
// texts are refused for the same reasons (docs/MODEL-FILES.md, "JSON"), so that a config.json the
// compiler accepts is one the runtime loads. JSON.parse is too lenient for that: it takes the last of
// duplicate keys, turns 1e400 into Infinity and 2^64 + 1 into a rounded double, and cannot tell 128.0
// from 128. jsonc-parser's tree keeps every member and each number's text, which is what these checks need.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { parseTree, ParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import { MAX_JSON_DEPTH, MAX_JSON_FILE_BYTES } from './limits.ts';

export type JsonKind = 'null' | 'bool' | 'integer' | 'float' | 'string' | 'array' | 'object';

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const INTEGER_TEXT = /^-?\d+$/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** One value of a parsed document with its path for messages (`rope_scaling.factor`, `shape[2]`). */
export class JsonValue {
  constructor(
    private readonly node: Node,
    private readonly text: string,
    readonly path: string,
    readonly file: string,
  ) {}

  get kind(): JsonKind {
    switch (this.node.type) {
      case 'boolean':
        return 'bool';
      case 'number':
        return INTEGER_TEXT.test(this.raw) ? 'integer' : 'float';
      case 'property':
        throw new Error('internal error: a property node is not a value');
      default:
        return this.node.type;
    }
  }

  /** The value as written (numbers keep their text: 128.0 stays 128.0). */
  get raw(): string {
    return this.text.slice(this.node.offset, this.node.offset + this.node.length);
  }

  /** An integer written without fraction or exponent, exactly; undefined for anything else. */
  integer(): bigint | undefined {
    return this.kind === 'integer' ? BigInt(this.raw) : undefined;
  }
  number(): number | undefined {
    return this.node.type === 'number' ? Number(this.raw) : undefined;
  }
  boolean(): boolean | undefined {
    return this.node.type === 'boolean' ? (this.node.value as boolean) : undefined;
  }
  string(): string | undefined {
    return this.node.type === 'string' ? (this.node.value as string) : undefined;
  }

  items(): JsonValue[] {
    if (this.node.type !== 'array') return [];
    return (this.node.children ?? []).map((c, i) => new JsonValue(c, this.text, `${this.path}[${i}]`, this.file));
  }
  members(): [string, JsonValue][] {
    if (this.node.type !== 'object') return [];
    return (this.node.children ?? []).map((p) => {
      const key = p.children![0].value as string;
      return [key, new JsonValue(p.children![1], this.text, this.path ? `${this.path}.${key}` : key, this.file)];
    });
  }
  get size(): number {
    return this.node.type === 'array' || this.node.type === 'object' ? (this.node.children ?? []).length : 0;
  }
  /** The member `key` of an object (keys are unique: parse refuses duplicates). */
  get(key: string): JsonValue | undefined {
    return this.members().find(([k]) => k === key)?.[1];
  }

  /** Compact text of the value for messages, cut to about 80 characters. */
  dump(): string {
    const s = compact(this.node, this.text);
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  }

  /** Throws "<file>: field '<path>' <what>". */
  fail(what: string): never {
    throw new Error(`${this.file}: field '${this.path}' ${what}`);
  }
}

function compact(n: Node, text: string): string {
  switch (n.type) {
    case 'object':
      return `{${(n.children ?? []).map((p) => `${JSON.stringify(p.children![0].value)}:${compact(p.children![1], text)}`).join(',')}}`;
    case 'array':
      return `[${(n.children ?? []).map((c) => compact(c, text)).join(',')}]`;
    case 'number':
      return text.slice(n.offset, n.offset + n.length);
    default:
      return JSON.stringify(n.value);
  }
}

/** jsonc-parser's error codes in the runtime's words (runtime/src/json.cpp describe()). */
function describe(e: ParseError, text: string): string {
  // jsonc-parser reads 064 as the number 0 followed by a stray 64; simdjson calls it a malformed number.
  if (/\d/.test(text[e.offset] ?? '') && /(^|[^\d.eE+-])-?0$/.test(text.slice(Math.max(0, e.offset - 3), e.offset))) return NUMBER_PROBLEM;
  switch (e.error) {
    case ParseErrorCode.InvalidNumberFormat:
    case ParseErrorCode.UnexpectedEndOfNumber:
      return NUMBER_PROBLEM;
    case ParseErrorCode.UnexpectedEndOfString:
      return 'a string is not closed';
    case ParseErrorCode.InvalidUnicode:
    case ParseErrorCode.InvalidEscapeCharacter:
      return 'a string has a bad escape (or a lone surrogate)';
    case ParseErrorCode.InvalidCharacter:
      return 'a string has an unescaped control character';
    default:
      return 'bad structure (missing or extra commas, brackets, quotes, keys, or text after the value)';
  }
}

const NUMBER_PROBLEM = 'a number is malformed or out of range (integers: 64 bits, others: a double)';
const DEPTH_PROBLEM = `nesting deeper than ${MAX_JSON_DEPTH} arrays/objects`;

/** Parses `text` as strictly as the runtime does; errors name `file`. */
export function parseStrictJson(text: string, file: string): JsonValue {
  const invalid = (why: string) => new Error(`${file}: not valid JSON: ${why}`);
  if (text.charCodeAt(0) === 0xfeff) throw invalid('starts with a byte-order mark');
  if (text.trim() === '') throw invalid('the text is empty');
  const errors: ParseError[] = [];
  let root: Node | undefined;
  try {
    root = parseTree(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  } catch (e) {
    if (e instanceof RangeError) throw invalid(DEPTH_PROBLEM); // its recursion ran out of stack: far too deep
    throw e;
  }
  if (errors.length || !root) throw invalid(errors.length ? describe(errors[0], text) : 'the text is empty');
  // What the runtime's parser (simdjson) refuses while parsing: numbers out of range, lone surrogates.
  const stack: Node[] = [root];
  for (let n = stack.pop(); n; n = stack.pop()) {
    if (n.type === 'number') {
      const raw = text.slice(n.offset, n.offset + n.length);
      const ok = INTEGER_TEXT.test(raw) ? BigInt(raw) >= INT64_MIN && BigInt(raw) <= UINT64_MAX : Number.isFinite(Number(raw));
      if (!ok) throw invalid(NUMBER_PROBLEM);
    } else if (n.type === 'string' && LONE_SURROGATE.test(n.value as string)) {
      throw invalid('a string has a bad escape (or a lone surrogate)');
    }
    for (let i = (n.children?.length ?? 0) - 1; i >= 0; i--) stack.push(n.children![i]);
  }
  // What the runtime checks over the tree after parsing: depth, then duplicate keys, in document order.
  checkTree(new JsonValue(root, text, '', file), 1);
  return new JsonValue(root, text, '', file);
}

function checkTree(v: JsonValue, depth: number): void {
  const kind = v.kind;
  if (kind !== 'array' && kind !== 'object') return;
  if (depth > MAX_JSON_DEPTH) throw new Error(`${v.file}: not valid JSON: ${DEPTH_PROBLEM}`);
  if (kind === 'array') {
    for (const x of v.items()) checkTree(x, depth + 1);
    return;
  }
  const seen = new Set<string>();
  for (const [key, x] of v.members()) {
    if (seen.has(key)) throw new Error(`${v.file}: duplicate key '${key}' ${v.path ? `in '${v.path}'` : 'in the top-level object'}`);
    seen.add(key);
    checkTree(x, depth + 1);
  }
}

/**
 * Reads a regular file (a symlink to one is fine) as UTF-8 text, refusing anything else without blocking
 * on open (a FIFO), as the runtime's read_regular_file does.
 */
export function readRegularFile(file: string): string {
  const buf = readRegularBytes(file, MAX_JSON_FILE_BYTES, 'a JSON file');
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf);
  } catch {
    throw new Error(`${file}: not valid JSON: the text is not valid UTF-8`);
  }
}

/** The bytes of a regular file (refusing a FIFO, a device, a directory without blocking), at most `maxBytes`. */
export function readRegularBytes(file: string, maxBytes: number = Infinity, what = 'this file'): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${file}: not a regular file`);
    if (st.size > maxBytes) throw new Error(`${file}: ${st.size} bytes exceeds the ${maxBytes}-byte limit for ${what}`);
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

// Reading the fields of a JSON request body: each reader checks the type and range and throws a 400 that
// names the field (OpenAI's `param`). A field that is absent or null takes its default.
import { badRequest } from './errors.ts';

export type Body = Readonly<Record<string, unknown>>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function given(body: Body, key: string): unknown {
  const v = body[key];
  return v === null ? undefined : v;
}

export function wrongType(key: string, want: string, v: unknown): never {
  throw badRequest(`'${key}' must be ${want}, got ${describe(v)}`, key, 'invalid_type');
}

export function optionalString(body: Body, key: string): string | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') wrongType(key, 'a string', v);
  return v;
}

export function requiredString(body: Body, key: string): string {
  const v = optionalString(body, key);
  if (v === undefined) throw badRequest(`'${key}' is required`, key, 'missing_required_parameter');
  return v;
}

export function optionalBoolean(body: Body, key: string): boolean | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') wrongType(key, 'a boolean', v);
  return v;
}

interface Range {
  readonly min?: number;
  readonly max?: number;
}

function inRange(key: string, n: number, r: Range): number {
  if ((r.min !== undefined && n < r.min) || (r.max !== undefined && n > r.max)) {
    const bounds = r.max === undefined ? `at least ${r.min}` : r.min === undefined ? `at most ${r.max}` : `between ${r.min} and ${r.max}`;
    throw badRequest(`'${key}' must be ${bounds}, got ${n}`, key, 'invalid_value');
  }
  return n;
}

export function optionalNumber(body: Body, key: string, r: Range = {}): number | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) wrongType(key, 'a number', v);
  return inRange(key, v, r);
}

export function optionalInteger(body: Body, key: string, r: Range = {}): number | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) wrongType(key, 'an integer', v);
  return inRange(key, v, r);
}

/** An object field (e.g. stream_options); undefined when absent or null. */
export function optionalObject(body: Body, key: string): Body | undefined {
  const v = given(body, key);
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) wrongType(key, 'an object', v);
  return v as Body;
}

/** `stop`: a string or an array of up to `max` non-empty strings. */
export function stopStrings(body: Body, max = 4): string[] {
  const v = given(body, 'stop');
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : Array.isArray(v) ? v : wrongType('stop', 'a string or an array of strings', v);
  if (list.length > max) throw badRequest(`'stop' holds at most ${max} strings, got ${list.length}`, 'stop', 'invalid_value');
  return list.map((s, i) => {
    if (typeof s !== 'string') wrongType(`stop[${i}]`, 'a string', s);
    if (s.length === 0) throw badRequest(`'stop[${i}]' is empty`, 'stop', 'invalid_value');
    return s;
  });
}

/** A field this server does not implement: absent, null, or its neutral value only. */
export function onlyNeutral(body: Body, key: string, neutral: readonly unknown[], why: string): void {
  const v = given(body, key);
  if (v === undefined || neutral.includes(v)) return;
  throw badRequest(`'${key}' ${why}; got ${describe(v)}`, key, 'unsupported_parameter');
}

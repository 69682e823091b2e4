// Loads a model directory's Hugging Face tokenizer.json (+ tokenizer_config.json when present) with the
// pure-JS @huggingface/tokenizers, which reads the same format as the Rust `tokenizers` crate.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { bytesToUnicode } from './tokenizer-build.ts';

export interface LoadedTokenizer {
  /** Token ids of `text`, without special tokens (prepend `bos` yourself where the model wants it). */
  encode(text: string): number[];
  /**
   * Text of `ids`; special tokens (<s>, </s>, ...) are left out unless `keepSpecial`. An id the tokenizer
   * does not have (models often pad their vocabulary past the tokenizer's) is an error, or with
   * `unknownAsId` is written as `<id N>` between the decoded runs of known ids.
   */
  decode(ids: readonly number[], opts?: { keepSpecial?: boolean; unknownAsId?: boolean }): string;
  /**
   * The bytes of one token as the decoder writes them (special tokens included): for a ByteLevel decoder the
   * token's own bytes, which may be part of a UTF-8 character; otherwise the UTF-8 of its decoded text.
   */
  tokenBytes(id: number): Uint8Array;
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;
}

function readJson(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${path}: expected a JSON object`);
  return v as Record<string, unknown>;
}

/** A special token named in tokenizer_config.json: a string or an AddedToken object {content}. */
function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** A token id from config.json (`eos_token_id` may be a list; the first one is the primary). */
function idField(v: unknown): number | undefined {
  const x = Array.isArray(v) ? v[0] : v;
  return typeof x === 'number' && Number.isInteger(x) ? x : undefined;
}

export async function loadTokenizer(dir: string): Promise<LoadedTokenizer> {
  const tokPath = join(dir, 'tokenizer.json');
  if (!existsSync(tokPath)) throw new Error(`${dir}: no tokenizer.json`);
  const json = readJson(tokPath);
  const cfgPath = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgPath) ? readJson(cfgPath) : {};
  const modelCfgPath = join(dir, 'config.json');
  const modelCfg = existsSync(modelCfgPath) ? readJson(modelCfgPath) : {};

  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, cfg);
  } catch (e) {
    throw new Error(`${tokPath}: cannot build a tokenizer: ${(e as Error).message}`);
  }
  const vocabSize = tok.get_vocab(true).size;
  const special = (field: 'bos' | 'eos'): number | undefined => {
    const name = tokenName(cfg[`${field}_token`]);
    const byName = name === undefined ? undefined : tok.token_to_id(name);
    return byName ?? idField(modelCfg[`${field}_token_id`]);
  };

  // A ByteLevel decoder (alone or in a Sequence) maps each character of a token back to one byte.
  const decoder = json.decoder as { type?: string; decoders?: { type?: string }[] } | null | undefined;
  const byteLevel = decoder?.type === 'ByteLevel' || (decoder?.decoders ?? []).some((d) => d?.type === 'ByteLevel');
  const byteOf = new Map(bytesToUnicode().map((c, b) => [c, b]));
  const utf8 = new TextEncoder();

  return {
    vocabSize,
    tokenBytes: (id) => {
      const piece = tok.id_to_token(id);
      if (piece === undefined) return utf8.encode(`<id ${id}>`);
      const chars = [...piece];
      if (byteLevel && chars.every((c) => byteOf.has(c))) return Uint8Array.from(chars, (c) => byteOf.get(c)!);
      return utf8.encode(tok.decode([id], { skip_special_tokens: false }));
    },
    bos: special('bos'),
    eos: special('eos'),
    encode: (text) => {
      if (typeof text !== 'string') throw new Error(`encode: expected a string, got ${typeof text}`);
      return tok.encode(text, { add_special_tokens: false }).ids;
    },
    decode: (ids, opts = {}) => {
      const known = (id: number) => Number.isInteger(id) && id >= 0 && id < vocabSize;
      const run = (xs: number[]) => (xs.length ? tok.decode(xs, { skip_special_tokens: !opts.keepSpecial }) : ''); // the library refuses []
      if (!opts.unknownAsId) {
        ids.forEach((id, i) => {
          if (!known(id)) throw new Error(`decode: token ${i} is ${id}, not an id in [0, ${vocabSize})`);
        });
        return run([...ids]);
      }
      let text = '';
      let pending: number[] = [];
      for (const id of ids) {
        if (known(id)) {
          pending.push(id);
          continue;
        }
        text += `${run(pending)}<id ${id}>`;
        pending = [];
      }
      return text + run(pending);
    },
  };
}

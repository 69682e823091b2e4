// Builds a Hugging Face tokenizer.json whose vocabulary is exactly a random model's vocab size.
//
// vocab >= 258: byte-level BPE (GPT-2 / Llama 3 style): ids 0..255 are the bytes, then merges learnt
//   from the built-in English text, then <s> and </s> as added special tokens (ids V-2, V-1).
// vocab <  258: character-level BPE over printable ASCII and newline, no pre-tokenizer, a Fuse decoder:
//   ids 0 <unk>, 1 <s>, 2 </s>, then the most common characters, then learnt merges once all fit.
// Both are plain Rust-`tokenizers` formats (merges as "a b" strings, so no token contains a space).
// When the text runs out of pairs to merge, further merges are formed deterministically from existing
// tokens so that every id is a real, reachable token.

import { ENGLISH_CORPUS } from './corpus.ts';

export interface TokenizerFiles {
  /** The tokenizer.json object. */
  readonly tokenizer: Record<string, unknown>;
  /** The tokenizer_config.json object. */
  readonly config: Record<string, unknown>;
  readonly bosId: number;
  readonly eosId: number;
  readonly kind: 'byte-level' | 'char-level';
}

export const BOS = '<s>';
export const EOS = '</s>';
export const UNK = '<unk>';
const BYTE_LEVEL_MIN_VOCAB = 258;
/** The smallest vocabulary: the three specials and one character. */
export const MIN_VOCAB = 4;

/** Printable ASCII and newline, most frequent in English first (the char-level alphabet order). */
const CHAR_ORDER =
  ' etaoinsrhldcumfpgwybvkxjqz' + '\n.,' + 'ETAOINSRHLDCUMFPGWYBVKXJQZ' + '0123456789' + `'"!?;:-()` +
  '/&*+=<>[]{}_@#$%^`|~\\';

/** GPT-2's reversible map from bytes to printable unicode characters, used by ByteLevel. */
export function bytesToUnicode(): string[] {
  const direct: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) direct.push(b);
  for (let b = 0xa1; b <= 0xac; b++) direct.push(b);
  for (let b = 0xae; b <= 0xff; b++) direct.push(b);
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) map[b] = direct.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + n++);
  return map;
}

/** GPT-2's pre-tokenisation pattern (what ByteLevel with use_regex applies). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

interface Word {
  symbols: string[];
  count: number;
}

function wordsOf(pieces: string[], symbolize: (piece: string) => string[]): Word[] {
  const counts = new Map<string, number>();
  for (const p of pieces) if (p.length > 0) counts.set(p, (counts.get(p) ?? 0) + 1);
  return [...counts.keys()].sort().map((p) => ({ symbols: symbolize(p), count: counts.get(p)! }));
}

/**
 * Classic BPE training: repeatedly merge the most frequent adjacent pair (ties: the smallest pair in
 * code-unit order), until `want` merges or no pair is left.
 */
function learnMerges(words: Word[], want: number): [string, string][] {
  const merges: [string, string][] = [];
  const SEP = '\u0000';
  while (merges.length < want) {
    const pairs = new Map<string, number>();
    for (const w of words) {
      for (let i = 0; i + 1 < w.symbols.length; i++) {
        const key = w.symbols[i] + SEP + w.symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + w.count);
      }
    }
    let best: string | undefined;
    let bestCount = 0;
    for (const [key, c] of pairs) if (c > bestCount || (c === bestCount && best !== undefined && key < best)) [best, bestCount] = [key, c];
    if (best === undefined) break;
    const [a, b] = best.split(SEP) as [string, string];
    merges.push([a, b]);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.symbols[i]);
      }
      w.symbols = out;
    }
  }
  return merges;
}

/** Fill up with merges of existing tokens (in id order) whose concatenation is new. */
function syntheticMerges(vocab: Map<string, number>, base: readonly string[], want: number, allowed: (t: string) => boolean): [string, string][] {
  const merges: [string, string][] = [];
  const tokens = [...base];
  for (let i = 0; i < tokens.length && merges.length < want; i++) {
    for (let j = 0; j < tokens.length && merges.length < want; j++) {
      const t = tokens[i] + tokens[j];
      if (vocab.has(t) || !allowed(t)) continue;
      vocab.set(t, vocab.size);
      tokens.push(t);
      merges.push([tokens[i], tokens[j]]);
    }
  }
  if (merges.length < want) throw new Error(`could not form ${want} merges`); // unreachable: tokens grow without bound
  return merges;
}

function addMerges(vocab: Map<string, number>, merges: readonly [string, string][], nextId: () => number): void {
  for (const [a, b] of merges) vocab.set(a + b, nextId());
}

function specialToken(id: number, content: string) {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

function bpeModel(vocab: Map<string, number>, merges: readonly [string, string][], unk: string | null) {
  return {
    type: 'BPE',
    dropout: null,
    unk_token: unk,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: unk !== null,
    byte_fallback: false,
    ignore_merges: false,
    vocab: Object.fromEntries(vocab),
    merges: merges.map(([a, b]) => `${a} ${b}`),
  };
}

function tokenizerConfig(unk: string | null, maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: BOS,
    eos_token: EOS,
    unk_token: unk,
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
  };
}

function byteLevel(vocabSize: number, maxLength: number): TokenizerFiles {
  const b2u = bytesToUnicode();
  const vocab = new Map<string, number>(b2u.map((c, b) => [c, b]));
  const want = vocabSize - 256 - 2;
  const pieces = ENGLISH_CORPUS.match(GPT2_SPLIT) ?? [];
  const enc = new TextEncoder();
  const learnt = learnMerges(wordsOf(pieces, (p) => [...enc.encode(p)].map((b) => b2u[b])), want);
  addMerges(vocab, learnt, () => vocab.size);
  const merges = [...learnt, ...syntheticMerges(vocab, [...vocab.keys()], want - learnt.length, () => true)];
  const bosId = vocabSize - 2;
  const eosId = vocabSize - 1;
  const byteLevelCfg = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    kind: 'byte-level',
    bosId,
    eosId,
    config: tokenizerConfig(null, maxLength),
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [specialToken(bosId, BOS), specialToken(eosId, EOS)],
      normalizer: null,
      pre_tokenizer: byteLevelCfg,
      post_processor: null,
      decoder: byteLevelCfg,
      model: bpeModel(vocab, merges, null),
    },
  };
}

function charLevel(vocabSize: number, maxLength: number): TokenizerFiles {
  const vocab = new Map<string, number>([[UNK, 0], [BOS, 1], [EOS, 2]]);
  const alphabet = [...CHAR_ORDER].slice(0, vocabSize - 3);
  for (const c of alphabet) vocab.set(c, vocab.size);
  const want = vocabSize - vocab.size;
  let merges: [string, string][] = [];
  if (want > 0) {
    // Merges never include a space (the "a b" merge format cannot hold one), so learn within words.
    const learnt = learnMerges(wordsOf(ENGLISH_CORPUS.split(' '), (p) => [...p]), want);
    addMerges(vocab, learnt, () => vocab.size);
    merges = [...learnt, ...syntheticMerges(vocab, alphabet.filter((c) => c !== ' '), want - learnt.length, (t) => !t.includes(' '))];
  }
  return {
    kind: 'char-level',
    bosId: 1,
    eosId: 2,
    config: tokenizerConfig(UNK, maxLength),
    tokenizer: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [specialToken(0, UNK), specialToken(1, BOS), specialToken(2, EOS)],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: { type: 'Fuse' },
      model: bpeModel(vocab, merges, UNK),
    },
  };
}

/** tokenizer.json and tokenizer_config.json for a model with exactly `vocabSize` tokens. */
export function buildTokenizerFiles(vocabSize: number, maxLength: number): TokenizerFiles {
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_VOCAB) {
    throw new Error(`vocab size must be an integer >= ${MIN_VOCAB} (three special tokens and a character), got ${vocabSize}`);
  }
  return vocabSize >= BYTE_LEVEL_MIN_VOCAB ? byteLevel(vocabSize, maxLength) : charLevel(vocabSize, maxLength);
}

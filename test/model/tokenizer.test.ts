import fc from 'fast-check';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildTokenizerFiles } from '../../model/tokenizer-build.ts';
import { loadTokenizer, type LoadedTokenizer } from '../../model/tokenizer.ts';
import { tempDirs } from './tmp.ts';

const tmp = tempDirs('tok');

/** A directory holding just the tokenizer files for `vocab`. */
function tokenizerDir(vocab: number): string {
  const dir = tmp();
  const files = buildTokenizerFiles(vocab, 4096);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(files.config));
  return dir;
}

const PROSE = 'The keeper climbed the stairs to light the lamp, as she had done for many years.\nShips came home.';

describe('byte-level BPE tokenizer (vocab >= 258)', () => {
  let tok: LoadedTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(tokenizerDir(512));
  });

  it('has exactly the model vocabulary, with <s> and </s> last', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.bos).toBe(510);
    expect(tok.eos).toBe(511);
  });

  it('round-trips any unicode text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (text) => {
        fc.pre(!text.includes('<s>') && !text.includes('</s>'));
        const ids = tok.encode(text);
        for (const id of ids) expect(id >= 0 && id < 510).toBe(true);
        expect(tok.decode(ids)).toBe(text);
      }),
      { numRuns: 300 },
    );
    const mixed = 'naïve café — 日本語 🚀  two  spaces\t\ttabs\r\n';
    expect(tok.decode(tok.encode(mixed))).toBe(mixed);
  });

  it('compresses English with learnt merges and treats <s> as special', () => {
    const ids = tok.encode(PROSE);
    expect(ids.length).toBeLessThan(PROSE.length / 2);
    expect(tok.encode('<s>hi</s>')).toEqual([510, ...tok.encode('hi'), 511]);
    expect(tok.decode([510, ...tok.encode('hi'), 511])).toBe('hi');
    expect(tok.decode([510, ...tok.encode('hi')], { keepSpecial: true })).toBe('<s>hi');
  });

  it('fills the vocabulary with distinct tokens, ids 0..V-3 then the two specials', () => {
    const json = JSON.parse(readFileSync(join(tokenizerDir(4096), 'tokenizer.json'), 'utf8'));
    const ids = Object.values(json.model.vocab as Record<string, number>).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: 4094 }, (_, i) => i));
    expect(json.added_tokens.map((t: { id: number; content: string }) => [t.id, t.content])).toEqual([[4094, '<s>'], [4095, '</s>']]);
    expect(json.model.merges.length).toBe(4096 - 258);
    // Every merge joins two tokens already in the vocabulary into the next one.
    for (const m of json.model.merges as string[]) {
      const [a, b] = m.split(' ');
      expect(json.model.vocab[a] !== undefined && json.model.vocab[b] !== undefined && json.model.vocab[a + b] !== undefined).toBe(true);
    }
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => tok.decode([1, 512])).toThrow('decode: token 1 is 512, not an id in [0, 512)');
    expect(() => tok.decode([-1])).toThrow('not an id');
  });

  it('with unknownAsId, writes ids it lacks as <id N> between decoded runs (a model vocabulary padded past the tokenizer)', () => {
    const hi = tok.encode('hi');
    const there = tok.encode(' there');
    expect(tok.decode([...hi, 512, 4000, ...there], { unknownAsId: true })).toBe('hi<id 512><id 4000> there');
    expect(tok.decode([700], { unknownAsId: true })).toBe('<id 700>');
    expect(tok.decode([...hi], { unknownAsId: true })).toBe('hi');
  });

  it("tokenBytes: a token's own bytes, which may split a character; together the text's UTF-8", () => {
    const text = 'naïve café — 日本語 🚀 lamp';
    const ids = tok.encode(text);
    const bytes = ids.flatMap((id) => [...tok.tokenBytes(id)]);
    expect(Buffer.from(bytes).toString('utf8')).toBe(text);
    expect(ids.some((id) => tok.decode([id]).includes('\uFFFD'))).toBe(true); // some token is part of a character
    expect(new TextDecoder().decode(tok.tokenBytes(510))).toBe('<s>');
  });
});

describe('character-level tokenizer (vocab < 258)', () => {
  it('round-trips text over its alphabet and maps the rest to <unk>', async () => {
    for (const vocab of [40, 99, 200]) {
      const tok = await loadTokenizer(tokenizerDir(vocab));
      expect(tok.vocabSize).toBe(vocab);
      expect([tok.bos, tok.eos]).toEqual([1, 2]);
      const text = vocab >= 99 ? PROSE : 'the rain in the hills';
      expect(tok.decode(tok.encode(text))).toBe(text);
      expect(tok.encode('é')).toEqual([0]);
      expect(Buffer.from(tok.encode(text).flatMap((id) => [...tok.tokenBytes(id)])).toString('utf8')).toBe(text); // tokenBytes: UTF-8 of each token's text
    }
  });

  it('learns merges once the whole alphabet fits', async () => {
    const tok = await loadTokenizer(tokenizerDir(200));
    expect(tok.encode(PROSE).length).toBeLessThan(PROSE.length * 0.75);
    const json = JSON.parse(readFileSync(join(tokenizerDir(200), 'tokenizer.json'), 'utf8'));
    expect(json.model.merges.length).toBe(200 - 3 - 96);
    for (const m of json.model.merges) expect(m.split(' ')).toHaveLength(2);
  });

  it('refuses vocabularies too small to hold the specials', () => {
    expect(() => buildTokenizerFiles(3, 10)).toThrow('vocab size must be an integer >= 4');
  });
});

describe('loadTokenizer errors', () => {
  it('names the missing or broken file', async () => {
    const empty = tmp();
    await expect(loadTokenizer(empty)).rejects.toThrow(`${empty}: no tokenizer.json`);
    const bad = tmp();
    writeFileSync(join(bad, 'tokenizer.json'), '{"model": ');
    await expect(loadTokenizer(bad)).rejects.toThrow(`${join(bad, 'tokenizer.json')}: not valid JSON`);
  });

  it('falls back to config.json token ids when tokenizer_config.json is absent', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(buildTokenizerFiles(300, 64).tokenizer));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ bos_token_id: 298, eos_token_id: [299, 5] }));
    const tok = await loadTokenizer(dir);
    expect([tok.bos, tok.eos]).toEqual([298, 299]);
  });
});

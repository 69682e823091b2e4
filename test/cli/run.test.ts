// `magicdec run` end to end on a random tiny model, in-process: text and token prompts, AR and speculative
// decoding give identical tokens, a spec's passes on another model, and every kind of bad input exits 1
// with a message and no stack trace.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryIo } from '../../lib/io.ts';
import { main } from '../../cli/main.ts';
import { writeRandomModel } from '../../model/random.ts';
import { buildTokenizerFiles } from '../../model/tokenizer-build.ts';
import { buildRuntime, REPO } from '../runtime/build-runtime.ts';

let tmp: string;
let model: string;

beforeAll(() => {
  buildRuntime();
  tmp = mkdtempSync(join(tmpdir(), 'magicdec-run-'));
  model = join(tmp, 'tiny');
  writeRandomModel({ preset: 'tiny', seed: 5, dtype: 'bf16', out: model });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = memoryIo();
  const code = await main(['run', ...args], io);
  return { code, out: io.out(), err: io.err() };
}

/** The token lines `run` prints, one list per request. */
function tokenLines(out: string): number[][] {
  return [...out.matchAll(/^ {4}tokens: (.*)$/gm)].map((m) => m[1].split(' ').map(Number));
}

describe('run', () => {
  it('decodes a text prompt: speculative tokens == autoregressive tokens, batch copies identical', async () => {
    const args = ['--model', model, '--prompt', 'The keeper climbed the narrow stairs to light the lamp.', '--batch', '3', '--max-tokens', '24', '--ignore-eos'];
    const ar = await run([...args, '--mode', 'ar']);
    const spec = await run([...args, '--mode', 'spec']);
    expect(ar.code, ar.err).toBe(0);
    expect(spec.code, spec.err).toBe(0);
    const arTokens = tokenLines(ar.out);
    expect(arTokens).toHaveLength(3);
    expect(arTokens[0]).toHaveLength(24);
    expect(arTokens[1]).toEqual(arTokens[0]);
    expect(tokenLines(spec.out)).toEqual(arTokens);
    expect(ar.out).toMatch(/^ {4}text: ".*"$/m);
    expect(ar.out).toMatch(/^autoregressive, 3 requests: 72 tokens generated, 69 by decode in \S+ s = \S+ tokens\/s$/m);
    expect(spec.out).toMatch(/^speculative \(gamma 3\), 3 requests: 72 tokens generated, 69 by decode/m);
    expect(spec.out).toMatch(/^acceptance [\d.]+, [\d.]+ tokens\/round, \d+ rounds; time: prefill \S+ s, draft \S+ s, verify \S+ s$/m);
    expect(spec.err).toMatch(/^module tiny\.cpu\.bf16\.t_causal-full\.d_causal-streaming\.greedy\.g3 \((cached|compiled)\): /m);
  });

  it('decodes several token prompts, each once, the same way in both modes and at any gamma', async () => {
    const prompts = ['1,2,3,4,5', '300,12', Array.from({ length: 700 }, (_, i) => (i * 31) % 512).join(',')];
    const args = ['--model', model, ...prompts.flatMap((p) => ['--prompt-tokens', p]), '--max-tokens', '40', '--ignore-eos'];
    const ar = await run([...args, '--mode', 'ar']);
    expect(ar.code, ar.err).toBe(0);
    const want = tokenLines(ar.out);
    expect(want.map((t) => t.length)).toEqual([40, 40, 40]);
    expect(new Set(want.map((t) => t.join()))).toHaveProperty('size', 3);
    expect(ar.out).toMatch(/^\[2\] 700 prompt tokens -> 40 tokens \(length\)$/m);
    for (const gamma of ['1', '3', 'auto']) {
      const spec = await run([...args, '--mode', 'spec', '--gamma', gamma]);
      expect(spec.code, spec.err).toBe(0);
      expect(tokenLines(spec.out), `gamma ${gamma}`).toEqual(want);
    }
    // auto: the engine picks 1..the spec's gamma per round and reports what it chose.
    const auto = await run([...args, '--mode', 'spec', '--gamma', 'auto']);
    expect(auto.out).toMatch(/^speculative \(gamma auto 1\.\.3, mean [\d.]+\), 3 requests: 120 tokens generated/m);
    const rounds = auto.out.match(/tokens\/round, (\d+) rounds \(((?:\d+ at gamma [123](?:, )?)+)\); time:/);
    expect(rounds, auto.out).not.toBeNull();
    const byGamma = [...rounds![2].matchAll(/(\d+) at gamma (\d)/g)].map((m) => Number(m[1]));
    expect(byGamma.reduce((a, b) => a + b, 0)).toBe(Number(rounds![1]));
  });

  it('prints ids the tokenizer lacks as <id N> when the model vocabulary is larger than the tokenizer\'s', async () => {
    const padded = join(tmp, 'padded-vocab');
    mkdirSync(padded);
    for (const f of readdirSync(model)) copyFileSync(join(model, f), join(padded, f));
    const files = buildTokenizerFiles(256, 4096);  // the model's vocabulary is 512
    writeFileSync(join(padded, 'tokenizer.json'), JSON.stringify(files.tokenizer));
    writeFileSync(join(padded, 'tokenizer_config.json'), JSON.stringify(files.config));
    const r = await run(['--model', padded, '--prompt-tokens', '300,400,5,6', '--max-tokens', '24', '--mode', 'ar']);
    expect(r.code, r.err).toBe(0);
    const tokens = tokenLines(r.out)[0];
    const text = JSON.parse(/text: (".*")$/m.exec(r.out)![1]) as string;
    for (const t of tokens.filter((t) => t >= 256)) expect(text).toContain(`<id ${t}>`);
    expect(tokens.some((t) => t >= 256)).toBe(true);  // the random model emits ids past the tokenizer's
  });

  it("uses a spec's passes and gamma on the model given", async () => {
    const r = await run(['--model', model, '--spec', join(REPO, 'examples/streaming-draft.ts'), '--prompt-tokens', '7,8,9', '--max-tokens', '8']);
    expect(r.code, r.err).toBe(0);
    expect(r.err).toMatch(/^module tiny\.cpu\.fp32\.t_causal-everything\.d_causal-sink_window\.greedy\.g4 /m);
    expect(r.out).toMatch(/^speculative \(gamma 4\), 1 request: /m);
  });

  it('--draft-param sets a draft runtime param: acceptance changes, tokens do not; an unknown key exits 1', async () => {
    const args = ['--model', model, '--prompt-tokens', '5,6,7,8,9,10,11,12', '--max-tokens', '24', '--ignore-eos'];
    const ar = await run([...args, '--mode', 'ar']);
    const wide = await run(args);
    const narrow = await run([...args, '--draft-param', 'kv_sink=0', '--draft-param', 'kv_window=1']);
    for (const r of [ar, wide, narrow]) expect(r.code, r.err).toBe(0);
    expect(tokenLines(narrow.out)).toEqual(tokenLines(ar.out));
    const acceptance = (out: string) => Number(/^acceptance ([\d.]+)/m.exec(out)![1]);
    expect(acceptance(narrow.out)).toBeLessThan(acceptance(wide.out));
    const bad = await run([...args, '--draft-param', 'kv_widnow=4']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^magicdec: error: --draft-param kv_widnow: the spec's draft pass has no runtime param 'kv_widnow' \(it has: kv_sink, kv_window\)$/m);
    const syntax = await run([...args, '--draft-param', 'kv_window']);
    expect(syntax.code).toBe(1);
    expect(syntax.err).toMatch(/expected <key>=<number>/);
  });
});

describe('run: sampling', () => {
  it('--seed S seeds request i with S + i, prints it, and replays; --temperature 0 is greedy', async () => {
    const base = ['--model', model, '--prompt-tokens', '5,6,7,8,9', '--max-tokens', '20', '--ignore-eos', '--mode', 'ar'];
    const sampling = ['--temperature', '0.9', '--top-k', '50', '--top-p', '0.95', '--min-p', '0.01'];
    const two = await run([...base, ...sampling, '--batch', '2', '--seed', '7']);
    expect(two.code, two.err).toBe(0);
    expect(two.out).toMatch(/^\[0\] 5 prompt tokens -> 20 tokens \(length\), seed 7$/m);
    expect(two.out).toMatch(/^\[1\] 5 prompt tokens -> 20 tokens \(length\), seed 8$/m);
    const [a, b] = tokenLines(two.out);
    expect(a).not.toEqual(b);
    const again = await run([...base, ...sampling, '--seed', '8']);
    expect(tokenLines(again.out)).toEqual([b]);
    const unseeded = await run([...base, ...sampling]);
    const drawn = Number(/^\[0\] .*, seed (\d+)$/m.exec(unseeded.out)![1]);
    expect(tokenLines((await run([...base, ...sampling, '--seed', String(drawn)])).out)).toEqual(tokenLines(unseeded.out));
    // A sampleAndMatch spec samples speculatively, with the autoregressive tokens.
    const spec = ['--spec', join(REPO, 'examples/sample-and-match.ts')];
    const sar = await run([...base, ...spec, ...sampling, '--batch', '2', '--seed', '7']);
    const sspec = await run([...base, ...spec, ...sampling, '--batch', '2', '--seed', '7', '--mode', 'spec']);
    expect(sspec.code, sspec.err).toBe(0);
    expect(sspec.err).toMatch(/^module tiny\.cpu\.bf16\.t_causal-full\.d_causal-streaming\.sample_and_match\.g4 /m);
    expect(sspec.out).toMatch(/^speculative \(gamma 4\), 2 requests: 40 tokens generated/m);
    expect(tokenLines(sspec.out)).toEqual(tokenLines(sar.out));
    // The same target pass in another module (other draft, buckets): the same logits, so the same samples.
    expect(tokenLines(sar.out)).toEqual([a, b]);
    const greedy = await run(base);
    expect(tokenLines((await run([...base, '--temperature', '0', '--seed', '3'])).out)).toEqual(tokenLines(greedy.out));
    expect(greedy.out).not.toMatch(/seed/);
  });
});

describe('run: bad input exits 1 with a clear message', () => {
  let broken: string;
  let mismatched: string;
  let bigTokenizer: string;
  beforeAll(() => {
    // A truncated safetensors file, and a config.json that disagrees with the weights' shapes.
    broken = join(tmp, 'broken');
    mismatched = join(tmp, 'mismatched');
    for (const d of [broken, mismatched]) {
      mkdirSync(d);
      for (const f of readdirSync(model)) copyFileSync(join(model, f), join(d, f));
    }
    truncateSync(join(broken, 'model.safetensors'), 1000);
    const cfg = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));
    writeFileSync(join(mismatched, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 256 }));
    bigTokenizer = join(tmp, 'big-tokenizer');
    mkdirSync(bigTokenizer);
    for (const f of readdirSync(model)) copyFileSync(join(model, f), join(bigTokenizer, f));
    const files = buildTokenizerFiles(1024, 4096);  // <s> is 1022, past the model's 512
    writeFileSync(join(bigTokenizer, 'tokenizer.json'), JSON.stringify(files.tokenizer));
    writeFileSync(join(bigTokenizer, 'tokenizer_config.json'), JSON.stringify(files.config));
  });

  const cases: [string, () => string[], RegExp][] = [
    ['a missing model directory', () => ['--model', join(tmp, 'nope'), '--prompt', 'hi'], /model directory not found: .*nope/],
    ['a directory without config.json', () => ['--model', tmp, '--prompt', 'hi'], /no config\.json/],
    ['a truncated safetensors file', () => ['--model', broken, '--prompt', 'hi'], /cannot run model .*broken: .*model\.safetensors: .*past the end of the file/],
    ['weights that do not match config.json', () => ['--model', mismatched, '--prompt', 'hi'], /mismatched.*mlp\.gate_proj\.weight' has shape \[384, 128\], config\.json implies \[256, 128\]/],
    ['no prompt', () => ['--model', model], /give a prompt/],
    ['a prompt longer than maxSeq allows', () => ['--model', model, '--prompt-tokens', '1,2', '--max-tokens', '16383'], /needs 16388 positions, more than the module's maxSeq 16384/],
    ['a token outside the vocabulary', () => ['--model', model, '--prompt-tokens', '1,2', '--prompt-tokens', '3,512'], /--prompt-tokens 2: token 1 is 512, outside the model's vocabulary \[0, 512\)/],
    ['a malformed token list', () => ['--model', model, '--prompt-tokens', '1,,2'], /expected comma-separated token ids/],
    ['an unknown mode', () => ['--model', model, '--prompt', 'x', '--mode', 'fast'], /Allowed choices are ar, spec/],
    ['a batch larger than the largest bucket', () => ['--model', model, '--prompt', 'x', '--batch', '257'], /--batch 257 exceeds the module's largest batch bucket 256/],
    ['a gamma larger than the spec allows', () => ['--model', model, '--prompt', 'x', '--gamma', '4'], /--gamma 4 exceeds the spec's gamma 3/],
    ['a gamma that is neither a number nor auto', () => ['--model', model, '--prompt', 'x', '--gamma', 'fast'], /gamma must be a whole number or 'auto', got 'fast'/],
    ['zero max tokens', () => ['--model', model, '--prompt', 'x', '--max-tokens', '0'], /max-tokens must be in 1\.\./],
    ['a negative temperature', () => ['--model', model, '--prompt', 'x', '--temperature', '-1'], /--temperature must be a finite number >= 0 \(0 is greedy\), got -1/],
    ['a temperature that is not a number', () => ['--model', model, '--prompt', 'x', '--temperature', 'hot'], /--temperature must be a number, got 'hot'/],
    ['a NaN temperature', () => ['--model', model, '--prompt', 'x', '--temperature', 'NaN'], /--temperature must be a number, got 'NaN'/],
    ['a negative top-k', () => ['--model', model, '--prompt', 'x', '--top-k', '-3'], /--top-k must be a whole number, got '-3'/],
    ['a top-p of 0', () => ['--model', model, '--prompt', 'x', '--top-p', '0'], /--top-p must be in \(0, 1\] \(1 keeps every token\), got 0/],
    ['a top-p above 1', () => ['--model', model, '--prompt', 'x', '--top-p', '1.5'], /--top-p must be in \(0, 1\] \(1 keeps every token\), got 1\.5/],
    ['a min-p above 1', () => ['--model', model, '--prompt', 'x', '--min-p', '2'], /--min-p must be in \[0, 1\] \(0 keeps every token\), got 2/],
    ['a negative min-p', () => ['--model', model, '--prompt', 'x', '--min-p', '-0.5'], /--min-p must be in \[0, 1\] \(0 keeps every token\), got -0\.5/],
    ['a seed past 2^53', () => ['--model', model, '--prompt', 'x', '--seed', String(2 ** 53)], /--seed must be an integer in \[0, 2\^53\), got 9007199254740992/],
    ['sampling with a greedy verifier in spec mode', () => ['--model', model, '--prompt', 'x', '--temperature', '0.7'], /--temperature 0\.7 samples, but the spec's verifier 'greedy' accepts only the target's argmax; give a spec with verify: sampleAndMatch \(e\.g\. examples\/sample-and-match\.ts\), or --mode ar/],
    ['a missing spec file', () => ['--model', model, '--prompt', 'x', '--spec', join(tmp, 'none.ts')], /spec file not found/],
    ['a spec with diagnostics', () => ['--model', model, '--prompt', 'x', '--spec', join(REPO, 'test/cli/fixtures/bad-spec.ts')], /MD\d{4}/],
    ['no --model', () => ['--prompt', 'x'], /required option '--model <dir>'/],
    ['a tokenizer whose ids exceed the model vocabulary', () => ['--model', bigTokenizer, '--prompt', 'hi'], /--prompt 1: .*big-tokenizer\/tokenizer\.json gives token 1022, outside the model's vocabulary \[0, 512\)/],
  ];
  for (const [what, args, message] of cases) {
    it(what, async () => {
      const r = await run(args());
      expect(r.code, r.err).toBe(1);
      expect(r.err).toMatch(message);
      expect(r.err).not.toMatch(/internal error|^\s+at /m);
      expect(r.out).toBe('');
    });
  }
});

// `magicdec serve` as a process: SIGTERM stops it accepting, lets the request in flight finish within the
// grace period (or cancels it once the grace is over: its stream gets an error event, then [DONE]) and it
// exits 0. And the command's own bad input (flags, model directory, a port in use) is one line, exit 1.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../cli/main.ts';
import { memoryIo } from '../../lib/io.ts';
import { buildRuntime, REPO } from '../runtime/build-runtime.ts';
import { parseEvents, serve, SPEC, writeModel } from './support.ts';

const tmp = mkdtempSync(join(tmpdir(), 'md-serve-stop-'));
let model: string;

beforeAll(async () => {
  buildRuntime();
  model = writeModel(join(tmp, 'tiny'));
  // Builds the module once, in this process, before the children look for it in the cache.
  await (await serve(model)).shutdown(0);
}, 600_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Child {
  proc: ChildProcess;
  url: string;
  stdout: () => string;
  exited: Promise<number | null>;
}

async function start(extra: string[]): Promise<Child> {
  const proc = spawn(process.execPath, [join(REPO, 'bin/magicdec.js'), 'serve', '--model', model, '--spec', SPEC, '--port', '0', '--max-batch', '4', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no 'listening' line in 120 s: ${out} ${err}`)), 120_000);
    proc.stdout!.on('data', () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    void exited.then((code) => rej(new Error(`exited ${code} before listening: ${err}`)));
  });
  return { proc, url, stdout: () => out, exited };
}

/** Starts a streaming completion; resolves `first` at its first token and `done` with all its events. */
function streaming(url: string, maxTokens: number): { first: Promise<void>; done: Promise<unknown[]> } {
  let first!: () => void;
  const firstP = new Promise<void>((r) => (first = r));
  const done = (async () => {
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'tiny', prompt: 'The keeper', max_tokens: maxTokens, ignore_eos: true, stream: true }),
    });
    let text = '';
    const dec = new TextDecoder();
    for await (const part of res.body!) {
      text += dec.decode(part, { stream: true });
      if (text.includes('"text"')) first();
    }
    return parseEvents(text);
  })();
  return { first: firstP, done };
}

describe('magicdec serve: SIGTERM', () => {
  it('finishes the request in flight, refuses new connections, exits 0', async () => {
    const c = await start(['--shutdown-grace', '60']);
    const s = streaming(c.url, 900);
    await s.first;
    c.proc.kill('SIGTERM');
    const events = await s.done;
    expect(events.at(-1)).toBe('[DONE]');
    const last = events.at(-2) as { choices: { finish_reason: string }[]; usage: { completion_tokens: number } };
    expect(last.choices[0].finish_reason).toBe('length');
    expect(last.usage.completion_tokens).toBe(900);
    expect(await c.exited).toBe(0);
    expect(c.stdout()).toContain('magicdec serve: SIGTERM: no new requests');
    expect(c.stdout()).toContain('stopped (1 in flight, 0 cancelled at the end of the grace period)');
    await expect(fetch(`${c.url}/health`)).rejects.toThrow();
  });

  it('cancels what is still running when the grace period ends: an error event, then [DONE]; exits 0', async () => {
    const c = await start(['--shutdown-grace', '0', '--mode', 'ar']);
    const s = streaming(c.url, 1000);
    await s.first;
    c.proc.kill('SIGTERM');
    const events = await s.done;
    expect(events.at(-1)).toBe('[DONE]');
    expect(events.at(-2)).toMatchObject({ error: { type: 'server_error', code: 'shutting_down', message: 'the server is shutting down' } });
    expect(await c.exited).toBe(0);
    expect(c.stdout()).toContain('stopped (1 in flight, 1 cancelled at the end of the grace period)');
  });
});

describe('magicdec serve: bad input', () => {
  async function run(args: string[]): Promise<{ code: number; err: string }> {
    const io = memoryIo();
    const code = await main(['serve', ...args], io);
    return { code, err: io.err() };
  }

  it('is one line and exit status 1', async () => {
    const cases: [string[], RegExp][] = [
      [[], /required option '--model <dir>' not specified/],
      [['--model', model, '--port', '70000'], /port must be in 0\.\.65535, got 70000/],
      [['--model', model, '--max-queue', 'many'], /max-queue must be a whole number, got 'many'/],
      [['--model', model, '--mode', 'fast'], /argument 'fast' is invalid/],
      [['--model', join(tmp, 'nowhere')], /^magicdec: error: model directory not found: .*nowhere\n$/],
      [['--model', model, '--spec', SPEC, '--max-batch', '65'], /^magicdec: error: --max-batch 65 exceeds the module's largest batch bucket 64 \(spec shapes\.batch\)\n$/],
      [['--model', model, '--spec', SPEC, '--gamma', '4'], /^magicdec: error: --gamma 4 exceeds the spec's gamma 3/],
      [['--model', model, '--spec', SPEC, '--max-batch', '8', '--step-tokens', '5'], /^magicdec: error: cannot run model .*: option step_tokens: 5 is less than the 32 rows of a full decode round/],
    ];
    for (const [args, want] of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err, args.join(' ')).toMatch(want);
      expect(r.err, args.join(' ')).not.toMatch(/    at /);
    }
  });

  it('a port in use is one line, exit 1', async () => {
    const s = await serve(model);
    try {
      const port = new URL(s.url).port;
      const r = await run(['--model', model, '--spec', SPEC, '--port', port]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`^magicdec: error: cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\n$`));
    } finally {
      await s.shutdown(0);
    }
  });
});

// What the server tests share: a random tiny model, the test deployment (fixtures/serve-spec.ts), servers
// started in-process on a loopback port, `magicdec run` as the reference for a prompt's tokens, and a reader
// of server-sent events for raw HTTP requests.
import { join } from 'node:path';
import { main } from '../../cli/main.ts';
import { memoryIo } from '../../lib/io.ts';
import { writeRandomModel } from '../../model/random.ts';
import { startServer, type RunningServer, type ServeOptions } from '../../server/index.ts';
import { REPO } from '../runtime/build-runtime.ts';

export const SPEC = join(REPO, 'test/server/fixtures/serve-spec.ts');

export function writeModel(dir: string): string {
  writeRandomModel({ preset: 'tiny', seed: 5, dtype: 'bf16', out: dir });
  return dir;
}

export async function serve(modelDir: string, opts: Partial<ServeOptions> = {}): Promise<RunningServer> {
  return startServer(
    { modelDir, spec: SPEC, host: '127.0.0.1', port: 0, mode: 'spec', maxBatch: 8, maxQueue: 64, maxBodyBytes: 1 << 20, ...opts },
    memoryIo(),
  );
}

/** The tokens `magicdec run` generates for one prompt (text or token ids) with the test spec. */
export async function runTokens(
  modelDir: string,
  prompt: { text: string } | { tokens: readonly number[] },
  maxTokens: number,
  mode: 'ar' | 'spec' = 'ar',
  extra: readonly string[] = [],
): Promise<number[]> {
  const io = memoryIo();
  const p = 'text' in prompt ? ['--prompt', prompt.text] : ['--prompt-tokens', prompt.tokens.join(',')];
  const code = await main(['run', '--model', modelDir, '--spec', SPEC, ...p, '--max-tokens', String(maxTokens), '--ignore-eos', '--mode', mode, ...extra], io);
  if (code !== 0) throw new Error(`magicdec run failed (${code}): ${io.err()}`);
  const line = /^ {4}tokens: (.*)$/m.exec(io.out());
  if (!line) throw new Error(`no tokens line in: ${io.out()}`);
  return line[1].split(' ').map(Number);
}

export interface Posted {
  status: number;
  headers: Headers;
  json?: Record<string, unknown>;
  /** The data of each server-sent event, parsed ('[DONE]' kept as the string). */
  events?: unknown[];
  text: string;
}

/** POSTs `body` (an object, or raw text sent as it is) and reads the answer, JSON or an event stream. */
export async function post(url: string, body: unknown, init: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Posted> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal,
  });
  const text = await res.text();
  const out: Posted = { status: res.status, headers: res.headers, text };
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) out.events = parseEvents(text);
  else if (text) out.json = JSON.parse(text);
  return out;
}

export function parseEvents(text: string): unknown[] {
  return text
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) => {
      if (!b.startsWith('data: ')) throw new Error(`not an SSE data event: ${JSON.stringify(b)}`);
      const d = b.slice(6);
      return d === '[DONE]' ? d : JSON.parse(d);
    });
}

/** A metric's value in Prometheus text (the first sample whose name and labels match). */
export function metric(text: string, name: string, labels = ''): number {
  const re = new RegExp(`^${name}${labels ? `\\{${labels.replace(/[{}]/g, '')}\\}` : ''} (\\S+)$`, 'm');
  const m = re.exec(text);
  if (!m) throw new Error(`metric ${name}${labels ? `{${labels}}` : ''} not found`);
  return Number(m[1]);
}

export async function metrics(server: RunningServer): Promise<string> {
  return (await fetch(`${server.url}/metrics`)).text();
}

/** Polls /metrics until no request is in flight and every KV page is free (or fails after `ms`). */
export async function settled(server: RunningServer, ms = 20_000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const text = await metrics(server);
    if (metric(text, 'magicdec_requests_in_flight') === 0 && metric(text, 'magicdec_kv_pages_free') === metric(text, 'magicdec_kv_pages_total')) return text;
    if (Date.now() > until) throw new Error(`not settled after ${ms} ms:\n${text.split('\n').filter((l) => l.startsWith('magicdec_') && !l.includes('_bucket')).join('\n')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

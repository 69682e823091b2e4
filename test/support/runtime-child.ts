// Runs engine jobs in a child process, so that a test can decode under another OpenMP thread count
// (OMP_NUM_THREADS is read once per process). Jobs arrive as JSON on stdin; each job's generations go to
// stdout as JSON with the logits as base64 of their float32 bytes, so the parent compares bit patterns.
//   node --import tsx test/support/runtime-child.ts < jobs.json
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { EngineOptions } from '../../runtime/node/index.ts';
import type { Decoded } from './runtime-cases.ts';

export interface ChildJob {
  readonly modelDir: string;
  readonly library: string;
  readonly opts: EngineOptions;
  readonly draft: Readonly<Record<string, number>>;
  readonly target: Readonly<Record<string, number>>;
  readonly requests: readonly { readonly prompt: readonly number[]; readonly maxTokens: number }[];
}

interface WireGeneration {
  tokens: number[];
  logits: string;
}

/** Runs the jobs in a child process with `threads` OpenMP threads; generations per job, per request. */
export function runInChild(jobs: readonly ChildJob[], threads: number): Decoded[][] {
  const out = execFileSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url)], {
    input: JSON.stringify(jobs),
    env: { ...process.env, OMP_NUM_THREADS: String(threads) },
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  const wire = JSON.parse(out) as WireGeneration[][];
  return wire.map((job) =>
    job.map((g) => {
      const bytes = Buffer.from(g.logits, 'base64');
      const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      const vocab = g.tokens.length ? all.length / g.tokens.length : 0;
      return { tokens: g.tokens, logits: g.tokens.map((_, i) => all.slice(i * vocab, (i + 1) * vocab)) };
    }),
  );
}

async function main(): Promise<void> {
  const { Engine } = await import('../../runtime/node/index.ts');
  const jobs = JSON.parse(readFileSync(0, 'utf8')) as ChildJob[];
  const results: WireGeneration[][] = [];
  for (const job of jobs) {
    const e = await Engine.create(job.modelDir, job.library, { ...job.opts, keepLogits: true });
    try {
      for (const [k, v] of Object.entries(job.draft)) e.setParam('draft', k, v);
      for (const [k, v] of Object.entries(job.target)) e.setParam('target', k, v);
      const gens = await Promise.all(job.requests.map((r) => e.generate(r.prompt, { maxTokens: r.maxTokens, ignoreEos: true })));
      results.push(
        gens.map((g) => ({
          tokens: g.tokens,
          logits: Buffer.concat((g.logits ?? []).map((row) => Buffer.from(row.buffer, row.byteOffset, row.byteLength))).toString('base64'),
        })),
      );
    } finally {
      e.close();
    }
  }
  process.stdout.write(JSON.stringify(results));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}

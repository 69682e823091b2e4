// `magicdec serve`'s server: builds (through the cache) the CPU module for a model directory, as `run`
// does (lib/module.ts), opens the engine, and serves it over HTTP (app.ts) until shut down. Shutting
// down stops accepting, lets the requests in flight finish for a grace period, cancels the rest (their
// clients get a 503, or an error event in their stream) and closes the engine.
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { openEngine } from '../lib/decode.ts';
import { loadDeployment } from '../lib/deployment.ts';
import { UserError } from '../lib/errors.ts';
import type { Io } from '../lib/io.ts';
import { readModelDir } from '../lib/model-dir.ts';
import { buildCpuModule, cpuDeploymentFor } from '../lib/module.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import type { Engine } from '../runtime/node/index.ts';
import { buildApp, Responses } from './app.ts';
import { loadChatTemplate } from './chat.ts';
import { Generations } from './generation.ts';
import { ServerMetrics } from './metrics.ts';
import type { ModelContext } from './requests.ts';

export interface ServeOptions {
  readonly modelDir: string;
  /** Spec whose passes, verifier and gamma to use (its model, arch and maxSeq replaced); default: the built-in one. */
  readonly spec?: string;
  readonly host: string;
  /** 0: any free port (RunningServer.url says which). */
  readonly port: number;
  /** Live sequences at once; default: the module's largest batch bucket. */
  readonly maxBatch?: number;
  /** KV pages in the pool; default: enough for maxBatch sequences of maxSeq. */
  readonly kvPages?: number;
  readonly mode: 'ar' | 'spec';
  readonly gamma?: number | 'auto';
  /** Target rows per engine step (runtime/src/engine.h); default: defaultStepTokens. */
  readonly stepTokens?: number;
  /** Requests held beyond maxBatch, waiting for admission; more get 429. */
  readonly maxQueue: number;
  /** Largest request body; larger ones get 413. */
  readonly maxBodyBytes: number;
  readonly cacheDir?: string;
}

export interface RunningServer {
  readonly url: string;
  readonly modelId: string;
  readonly module: string;
  readonly maxBatch: number;
  readonly kvPages: number;
  readonly engine: Engine;
  readonly context: ModelContext;
  /**
   * Stops accepting requests, lets those in flight finish for up to `graceMs`, cancels the rest, then
   * closes the HTTP server and the engine. Resolves with how many were in flight and how many were cancelled.
   */
  shutdown(graceMs: number): Promise<{ inFlight: number; cancelled: number }>;
}

/**
 * Prompt rows a step prefills beside a full decode round, by default. A decode round waits for the step's
 * prefill chunk, so the chunk bounds the stall a long prompt adds to every decoding request's inter-token
 * time: 128 rows cost about as much as a few decode rounds, while a chunk of that size still runs the
 * prefill GEMMs near their full-chunk throughput (a 4K prompt takes 32 steps).
 */
export const DEFAULT_PREFILL_ROWS = 128;

/** The server's default step_tokens: a full decode round (maxBatch * (gamma + 1) rows, maxBatch in AR) plus DEFAULT_PREFILL_ROWS. */
export function defaultStepTokens(maxBatch: number, mode: 'ar' | 'spec', gamma: number): number {
  return maxBatch * (mode === 'spec' ? gamma + 1 : 1) + DEFAULT_PREFILL_ROWS;
}

export async function startServer(opts: ServeOptions, io: Io): Promise<RunningServer> {
  const model = readModelDir(opts.modelDir);
  if (!existsSync(join(opts.modelDir, 'tokenizer.json'))) throw new UserError(`${opts.modelDir}: no tokenizer.json; the server needs one to read prompts and write text`);
  const tokenizer = await loadTokenizer(opts.modelDir).catch((e: Error) => {
    throw new UserError(e.message);
  });
  const chat = loadChatTemplate(opts.modelDir);
  const dep = cpuDeploymentFor(await loadDeployment(opts.spec), model);
  const largest = dep.shapes.batch[dep.shapes.batch.length - 1];
  if (opts.maxBatch !== undefined && opts.maxBatch > largest) {
    throw new UserError(`--max-batch ${opts.maxBatch} exceeds the module's largest batch bucket ${largest} (spec shapes.batch)`);
  }
  if (opts.gamma !== undefined && opts.gamma !== 'auto' && opts.gamma > dep.gamma) {
    throw new UserError(`--gamma ${opts.gamma} exceeds the spec's gamma ${dep.gamma} (the module verifies at most gamma + 1 rows)`);
  }
  const built = await buildCpuModule(dep, io, opts.cacheDir);
  const engine = await openEngine(opts.modelDir, built.library, {
    mode: opts.mode,
    ...(opts.maxBatch === undefined ? {} : { maxBatch: opts.maxBatch }),
    ...(opts.kvPages === undefined ? {} : { kvPages: opts.kvPages }),
    ...(opts.gamma === undefined ? {} : { gamma: opts.gamma }),
    stepTokens: opts.stepTokens ?? defaultStepTokens(opts.maxBatch ?? largest, opts.mode, dep.gamma),
  });
  const info = engine.info() as { options: { maxBatch: number; kvPages: number }; module: { maxSeq: number; pageSize: number; gamma: number } };
  const ctx: ModelContext = {
    id: basename(resolve(opts.modelDir)),
    tokenizer,
    vocabSize: model.vocabSize,
    maxSeq: info.module.maxSeq,
    overshoot: opts.mode === 'spec' ? info.module.gamma : 0,
    pageSize: info.module.pageSize,
    kvPages: info.options.kvPages,
    maxBatch: info.options.maxBatch,
    chat,
  };
  let generations: Generations | undefined;
  const metrics = new ServerMetrics({ snapshot: () => engine.snapshot(), kvPages: ctx.kvPages, inFlight: () => generations?.inFlight ?? 0 });
  // The runtime samples autoregressively; a speculative engine only with a module whose verifier samples.
  const canSample = opts.mode === 'ar' || dep.verify.mode !== 'greedy';
  const why = `this server decodes speculatively and the module's verifier '${dep.verify.name}' accepts only the target's argmax: start the server with --mode ar to sample`;
  generations = new Generations(engine, ctx, metrics, opts.mode, info.options.maxBatch + opts.maxQueue, { canSample, ...(canSample ? {} : { why }) });
  let draining = false;
  const responses = new Responses();
  const app = buildApp({ model: ctx, generations, metrics, maxBodyBytes: opts.maxBodyBytes, started: Math.floor(Date.now() / 1000), responses, draining: () => draining });
  try {
    await app.listen({ host: opts.host, port: opts.port });
  } catch (e) {
    engine.close();
    throw new UserError(`cannot listen on ${opts.host}:${opts.port}: ${(e as Error).message}`);
  }
  const addr = app.server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const gens = generations;
  let stopping: Promise<{ inFlight: number; cancelled: number }> | undefined;
  return {
    url: `http://${host}:${addr.port}`,
    modelId: ctx.id,
    module: built.plan.name,
    maxBatch: info.options.maxBatch,
    kvPages: ctx.kvPages,
    engine,
    context: ctx,
    shutdown(graceMs) {
      stopping ??= (async () => {
        draining = true;
        const inFlight = gens.inFlight;
        const closing = app.close(); // no new connections; idle keep-alive ones are closed
        let cancelled = 0;
        const timer = setTimeout(() => {
          cancelled = gens.inFlight;
          gens.abortAll();
        }, graceMs);
        await gens.idle();
        clearTimeout(timer);
        await responses.idle(); // every answer written (each ends as soon as its request settles)
        app.server.closeAllConnections(); // keep-alive connections that went idle after the close began
        await closing;
        engine.close();
        return { inFlight, cancelled };
      })();
      return stopping;
    },
  };
}

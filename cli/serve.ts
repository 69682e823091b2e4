// `magicdec serve --model DIR [--spec spec.ts] [--host H] [--port P] [--max-batch N] [--kv-pages N]
// [--mode spec|ar] [--gamma N|auto] [--step-tokens N] [--max-queue N] [--max-body-bytes N]
// [--shutdown-grace S] [--cache DIR]`: an OpenAI-compatible HTTP server over the engine (server/). Runs
// until SIGTERM or SIGINT, then drains (server/index.ts) and exits 0.
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Io } from '../lib/io.ts';
import { DEFAULT_PREFILL_ROWS, startServer, type RunningServer } from '../server/index.ts';
import { parseGamma, type Gamma } from './overrides.ts';
import { RUN_MODES } from './run.ts';

export interface ServeFlags {
  model: string;
  spec?: string;
  host: string;
  port: number;
  maxBatch?: number;
  kvPages?: number;
  mode: 'ar' | 'spec';
  gamma?: Gamma;
  stepTokens?: number;
  maxQueue: number;
  maxBodyBytes: number;
  shutdownGrace: number;
  cache?: string;
}

function whole(what: string, min: number, max: number): (text: string) => number {
  return (text) => {
    if (!/^\s*\d+\s*$/.test(text)) throw new InvalidArgumentError(`${what} must be a whole number, got '${text}'.`);
    const n = Number(text);
    if (n < min || n > max) throw new InvalidArgumentError(`${what} must be in ${min}..${max}, got ${n}.`);
    return n;
  };
}

/** Starts the server; resolves once `stop` (SIGTERM / SIGINT by default) has drained it. */
export async function serveCommand(flags: ServeFlags, io: Io, stop?: Promise<string>): Promise<RunningServer> {
  const server = await startServer(
    {
      modelDir: flags.model,
      spec: flags.spec,
      host: flags.host,
      port: flags.port,
      maxBatch: flags.maxBatch,
      kvPages: flags.kvPages,
      mode: flags.mode,
      gamma: flags.gamma,
      stepTokens: flags.stepTokens,
      maxQueue: flags.maxQueue,
      maxBodyBytes: flags.maxBodyBytes,
      cacheDir: flags.cache,
    },
    io,
  );
  io.stdout.write(
    `magicdec serve: listening on ${server.url} (model '${server.modelId}', module ${server.module}, mode ${flags.mode}, ` +
      `max batch ${server.maxBatch}, ${server.kvPages} KV pages)\n`,
  );
  const why = await (stop ?? signalled());
  io.stdout.write(`magicdec serve: ${why}: no new requests; finishing those in flight (grace ${flags.shutdownGrace} s)\n`);
  const r = await server.shutdown(flags.shutdownGrace * 1000);
  io.stdout.write(`magicdec serve: stopped (${r.inFlight} in flight, ${r.cancelled} cancelled at the end of the grace period)\n`);
  return server;
}

/** Resolves with the name of the first SIGTERM or SIGINT. */
function signalled(): Promise<string> {
  return new Promise((res) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      res(sig);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}

export function addServeCommand(cli: Command, io: Io): Command {
  return cli
    .command('serve')
    .description('serve a model directory over an OpenAI-compatible HTTP API (completions, chat, streaming, metrics), with continuous batching')
    .requiredOption('--model <dir>', 'Hugging Face model directory (config.json, *.safetensors, tokenizer.json); required')
    .option('--spec <file>', "spec whose passes, verifier and gamma to use (its model, arch and maxSeq are replaced); default: the built-in deployment")
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free port)', whole('port', 0, 65535), 8000)
    .option('--max-batch <n>', "sequences decoded together (default: the module's largest batch bucket)", whole('max-batch', 1, 4096))
    .option('--kv-pages <n>', 'KV-cache pages in the pool (default: enough for max-batch sequences of maxSeq)', whole('kv-pages', 1, 2 ** 31 - 1))
    .addOption(new Option('--mode <mode>', 'ar (autoregressive) or spec (self-speculative)').choices(RUN_MODES).default('spec'))
    .option('--gamma <n|auto>', "tokens drafted per round, at most the spec's gamma, or auto (default: the spec's)", parseGamma)
    .option(
      '--step-tokens <n>',
      `target rows per engine step: the decode round first, prefill in the rest, so a decoding request waits behind at most that many prompt rows per round (default: a full decode round, max-batch x (gamma + 1) or max-batch in ar, plus ${DEFAULT_PREFILL_ROWS})`,
      whole('step-tokens', 1, 2 ** 31 - 1),
    )
    .option('--max-queue <n>', 'requests held beyond max-batch, waiting for admission; more are answered 429', whole('max-queue', 0, 1 << 20), 256)
    .option('--max-body-bytes <n>', 'largest request body; larger ones are answered 413', whole('max-body-bytes', 1, 1 << 30), 1 << 20)
    .option('--shutdown-grace <s>', 'on SIGTERM, seconds to let requests in flight finish before cancelling them', whole('shutdown-grace', 0, 3600), 30)
    .option('--cache <dir>', 'build cache directory (default: .cache/modules in the magicdec checkout)')
    .action(async (flags: ServeFlags) => {
      await serveCommand(flags, io);
    });
}

// The HTTP application (fastify): OpenAI's /v1/completions and /v1/chat/completions (JSON or server-sent
// events), /v1/models, /health and /metrics. Every error leaves in OpenAI's shape (errors.ts). A client
// that disconnects before its response is complete cancels its request, which frees its sequence and KV
// pages at the engine's next step.
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ApiError, badRequest, modelNotFound, sendError, shuttingDown, toApiError } from './errors.ts';
import type { Body } from './fields.ts';
import { type Choice, ClientGone, type Generations, type Listener, type Outcome } from './generation.ts';
import { chatLogprobs, completionLogprobs, type TokenLogprob } from './logprobs.ts';
import type { ServerMetrics } from './metrics.ts';
import { type GenerationRequest, type ModelContext, parseChat, parseCompletion } from './requests.ts';

export interface AppContext {
  readonly model: ModelContext;
  readonly generations: Generations;
  readonly metrics: ServerMetrics;
  readonly maxBodyBytes: number;
  /** Unix seconds the server started (the model's `created`). */
  readonly started: number;
  /** Counts responses from their request to the end of their last byte (a shutdown waits for them). */
  readonly responses: Responses;
  draining(): boolean;
}

/** Responses in progress, so that a shutdown closes connections only once every answer is written. */
export class Responses {
  private open = 0;
  private waiters: (() => void)[] = [];

  begin(res: ServerResponse): void {
    this.open++;
    res.once('close', () => {
      if (--this.open === 0) {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      }
    });
  }

  idle(): Promise<void> {
    return this.open === 0 ? Promise.resolve() : new Promise((res) => this.waiters.push(res));
  }
}

function asObject(body: unknown): Body {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the request body must be a JSON object', null, 'invalid_body');
  return body as Body;
}

/** What a choice or a delta carries. */
interface Part {
  readonly index: number;
  readonly text: string;
  readonly tokens: readonly number[];
  readonly logprobs?: readonly TokenLogprob[];
  readonly offsets?: readonly number[];
}

/** The logprobs of a part in its endpoint's shape; null without any (not asked, or no tokens in it). */
function logprobsOf(req: GenerationRequest, model: ModelContext, p: Part): unknown {
  if (!p.logprobs || p.logprobs.length === 0) return null;
  return req.kind === 'completion' ? completionLogprobs(model.tokenizer, p.logprobs, p.offsets ?? []) : chatLogprobs(model.tokenizer, p.logprobs);
}

/** The choice (or chunk choice) of each endpoint. */
function choice(req: GenerationRequest, model: ModelContext, p: Part, finish: string | null, streaming: boolean): Record<string, unknown> {
  const ids = req.returnTokenIds ? { token_ids: p.tokens } : {};
  const logprobs = logprobsOf(req, model, p);
  if (req.kind === 'completion') return { index: p.index, text: p.text, logprobs, finish_reason: finish, ...ids };
  const message = { role: 'assistant', content: p.text };
  return streaming
    ? { index: p.index, delta: finish === null ? { content: p.text } : {}, logprobs, finish_reason: finish, ...ids }
    : { index: p.index, message, logprobs, finish_reason: finish, ...ids };
}

/** A choice's last chunk: its finish reason, no text. */
function finishing(req: GenerationRequest, model: ModelContext, c: Choice): Record<string, unknown> {
  return choice(req, model, { index: c.index, text: '', tokens: [] }, c.finishReason, true);
}

function envelope(req: GenerationRequest, id: string, created: number, model: string, streaming: boolean): Record<string, unknown> {
  const object = req.kind === 'completion' ? 'text_completion' : streaming ? 'chat.completion.chunk' : 'chat.completion';
  return { id, object, created, model, system_fingerprint: null };
}

export function buildApp(ctx: AppContext): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: ctx.maxBodyBytes, forceCloseConnections: 'idle' });

  // Any body is read as JSON (curl -d sends form-encoded by default); parse failures are 400s.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: ctx.maxBodyBytes }, (_req, text, done) => {
    const s = String(text);
    if (s.trim() === '') return done(badRequest('the request body is empty: expected a JSON object', null, 'invalid_json'), undefined);
    try {
      done(null, JSON.parse(s));
    } catch (e) {
      done(badRequest(`the request body is not valid JSON: ${(e as Error).message}`, null, 'invalid_json'), undefined);
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    ctx.responses.begin(reply.raw);
    // Counted once the response is done, whatever wrote it (a hijacked event stream included).
    reply.raw.once('close', () => ctx.metrics.http.inc({ route: request.routeOptions.url ?? 'unknown', status: String(reply.raw.statusCode) }));
    if (ctx.draining() && request.url.startsWith('/v1/')) throw shuttingDown();
  });
  app.setErrorHandler((e, _request, reply) => sendError(reply, toApiError(e, ctx.maxBodyBytes)));
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError(404, `no route ${request.method} ${request.url.split('?')[0]}`, 'invalid_request_error', null, 'not_found')),
  );

  const modelCard = () => ({ id: ctx.model.id, object: 'model', created: ctx.started, owned_by: 'magicdec', max_model_len: ctx.model.maxSeq });
  app.get('/health', async (_request, reply) => (ctx.draining() ? reply.code(503).send({ status: 'shutting down' }) : { status: 'ok' }));
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard()] }));
  app.get<{ Params: { model: string } }>('/v1/models/:model', async (request) => {
    if (request.params.model !== ctx.model.id) throw modelNotFound(request.params.model, ctx.model.id);
    return modelCard();
  });
  app.get('/metrics', async (_request, reply) => reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()));

  app.post('/v1/completions', (request, reply) => respond(ctx, request, reply, parseCompletion(asObject(request.body), ctx.model)));
  app.post('/v1/chat/completions', (request, reply) => respond(ctx, request, reply, parseChat(asObject(request.body), ctx.model)));
  return app;
}

async function respond(ctx: AppContext, request: FastifyRequest, reply: FastifyReply, req: GenerationRequest): Promise<unknown> {
  const gone = new AbortController();
  const res = reply.raw;
  // 'close' before the response has finished: the client went away (or the connection broke).
  res.once('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  const running = ctx.generations.admit(req, gone.signal); // a 429 or 400 here is an ordinary error response
  const id = `${req.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replaceAll('-', '')}`;
  const created = Math.floor(Date.now() / 1000);
  const head = envelope(req, id, created, ctx.model.id, req.stream);
  if (!req.stream) {
    let out: Outcome;
    try {
      out = await running.run();
    } catch (e) {
      if (e instanceof ClientGone) return reply.hijack(); // nobody to answer
      throw e;
    }
    return { ...head, choices: out.choices.map((c) => choice(req, ctx.model, c, c.finishReason, false)), usage: out.usage };
  }
  reply.hijack();
  stream(res, req, ctx.model, head, running.run);
  return reply;
}

/**
 * Writes a request's output as server-sent events in OpenAI's chunk format, ending with `data: [DONE]`:
 * each chunk holds one choice (its `index`); a choice's finishing chunk follows its last text.
 */
function stream(
  res: ServerResponse,
  req: GenerationRequest,
  model: ModelContext,
  head: Record<string, unknown>,
  run: (listener: Listener) => Promise<Outcome>,
): void {
  res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
  const send = (data: unknown) => {
    if (!res.destroyed) res.write(`data: ${JSON.stringify(data)}\n\n`);
  };
  if (req.kind === 'chat') {
    for (let index = 0; index < req.n; index++) send({ ...head, choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] });
  }
  let ended = 0;
  let last: Choice | undefined; // the choice that ends last: its finishing chunk waits for the usage
  run({
    delta: (d) => send({ ...head, choices: [choice(req, model, d, null, true)] }),
    finished: (c) => {
      if (++ended < req.n) send({ ...head, choices: [finishing(req, model, c)] });
      else last = c;
    },
  })
    .then((out) => {
      // The last finishing chunk carries the usage, unless the client asked for OpenAI's separate usage chunk.
      send({ ...head, choices: [finishing(req, model, last!)], ...(req.includeUsage ? {} : { usage: out.usage }) });
      if (req.includeUsage) send({ ...head, choices: [], usage: out.usage });
    })
    .catch((e: unknown) => {
      if (!(e instanceof ClientGone)) send(toApiError(e, 0).body());
    })
    .finally(() => {
      if (!res.destroyed) {
        res.write('data: [DONE]\n\n');
        res.end();
      }
    });
}

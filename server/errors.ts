// Errors in OpenAI's shape, {error: {message, type, param, code}}, with the HTTP status each deserves, and
// the mapping from whatever a route throws (our own checks, fastify's body parsing, the engine) to one.
import type { FastifyReply } from 'fastify';

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400: the request is wrong (types, values, a prompt too long); `param` names the field. */
export function badRequest(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', param, code);
}

export function modelNotFound(model: string, served: string): ApiError {
  return new ApiError(404, `The model '${model}' does not exist; this server serves '${served}'`, 'invalid_request_error', 'model', 'model_not_found');
}

export function queueFull(limit: number): ApiError {
  return new ApiError(429, `too many requests in flight: the server holds at most ${limit} (--max-batch + --max-queue) choices at once; retry later`, 'rate_limit_error', null, 'rate_limit_exceeded');
}

export function shuttingDown(): ApiError {
  return new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
}

/** What fastify's own errors carry. */
interface FastifyLikeError {
  code?: string;
  statusCode?: number;
  message?: string;
}

/** The ApiError for anything a route or fastify threw; `bodyLimit` names the configured body size. */
export function toApiError(e: unknown, bodyLimit: number): ApiError {
  if (e instanceof ApiError) return e;
  const f = (e ?? {}) as FastifyLikeError;
  switch (f.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, `the request body is larger than ${bodyLimit} bytes (--max-body-bytes)`, 'invalid_request_error', null, 'request_too_large');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return badRequest('the request body size does not match its Content-Length', null, 'invalid_body');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'the request body must be JSON (Content-Type: application/json)', 'invalid_request_error', null, 'unsupported_media_type');
  }
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return new ApiError(f.statusCode, f.message ?? 'bad request', 'invalid_request_error');
  }
  return new ApiError(500, `internal server error: ${e instanceof Error ? e.message : String(e)}`, 'server_error', null, 'internal_error');
}

export function sendError(reply: FastifyReply, e: ApiError): FastifyReply {
  return reply.code(e.status).type('application/json').send(e.body());
}

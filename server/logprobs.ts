// Log probabilities of the emitted tokens (completions `logprobs: N`, chat `logprobs: true` + `top_logprobs:
// N`). They are of the model's own distribution at each position: the log-softmax, in float64, of the
// target's logits row the engine kept for the token (RequestOptions.keepLogits), before temperature,
// top-k, top-p and min-p. Speculative and autoregressive decoding emit bitwise-equal logits, so the
// logprobs are the same in both modes. Ties in the top list go to the lower token id (md_argmax's order).
import type { LoadedTokenizer } from '../model/tokenizer.ts';

/** The most top logprobs a request may ask for (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;

export interface Ranked {
  readonly token: number;
  readonly logprob: number;
}

export interface TokenLogprob extends Ranked {
  /** The `n` most likely tokens, most likely first. */
  readonly top: readonly Ranked[];
}

/** log_softmax(row)[token] and the n most likely tokens, in float64. */
export function tokenLogprob(row: Float32Array, token: number, n: number): TokenLogprob {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  // The ids of the n most likely, sorted: an id enters when it beats the last (a strict > keeps the lower id on ties).
  const ids: number[] = [];
  for (let i = 0; n > 0 && i < row.length; i++) {
    const x = row[i];
    if (ids.length === n && !(x > row[ids[n - 1]])) continue;
    let at = ids.length;
    while (at > 0 && x > row[ids[at - 1]]) at--;
    ids.splice(at, 0, i);
    if (ids.length > n) ids.pop();
  }
  return { token, logprob: row[token] - lse, top: ids.map((t) => ({ token: t, logprob: row[t] - lse })) };
}

const utf8 = new TextDecoder('utf-8', { fatal: false });

/** How a token is shown: its text, or OpenAI's `bytes:\xNN...` when it is only part of a UTF-8 character. */
export function tokenText(tok: LoadedTokenizer, id: number): { text: string; bytes: number[] } {
  const bytes = [...tok.tokenBytes(id)];
  const text = utf8.decode(Uint8Array.from(bytes));
  if (!text.includes('\uFFFD')) return { text, bytes };
  return { text: `bytes:${bytes.map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}`, bytes };
}

/** The legacy completions shape: parallel arrays, `top_logprobs` also holding the chosen token (as OpenAI's). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  /** Each token's offset in the choice's text (the prompt is not echoed: the first is 0). */
  text_offset: number[];
}

export function completionLogprobs(tok: LoadedTokenizer, lps: readonly TokenLogprob[], offsets: readonly number[]): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [...offsets] };
  for (const lp of lps) {
    out.tokens.push(tokenText(tok, lp.token).text);
    out.token_logprobs.push(lp.logprob);
    const top: Record<string, number> = {};
    // Most likely first; a second token with the same text keeps the first's (higher) logprob.
    for (const t of [...lp.top, ...(lp.top.some((t) => t.token === lp.token) ? [] : [lp])]) {
      const k = tokenText(tok, t.token).text;
      if (!(k in top)) top[k] = t.logprob;
    }
    out.top_logprobs.push(top);
  }
  return out;
}

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

/** The chat shape: `{content: [...]}`, one entry per token with its top N (the chosen token not added). */
export function chatLogprobs(tok: LoadedTokenizer, lps: readonly TokenLogprob[]): { content: ChatLogprob[] } {
  const entry = (t: Ranked) => {
    const { text, bytes } = tokenText(tok, t.token);
    return { token: text, logprob: t.logprob, bytes };
  };
  return { content: lps.map((lp) => ({ ...entry(lp), top_logprobs: lp.top.map(entry) })) };
}

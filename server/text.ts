// Turning a stream of token ids into text as it arrives, and cutting it at stop strings.
//
// Detokenizing token by token is not the same as decoding the whole output: byte-level BPE tokens can end
// in the middle of a UTF-8 character, and some decoders strip or join spaces across tokens. So the text of
// the tokens since a recent offset is decoded again each time, and only what it adds past the text
// already given out is new, held back while it ends in an incomplete character (U+FFFD).
import type { LoadedTokenizer } from '../model/tokenizer.ts';

export class Detokenizer {
  private readonly tokens: number[] = [];
  private prefix = 0; // tokens[prefix..read) decode to the text last given out's tail
  private read = 0;

  constructor(private readonly tok: LoadedTokenizer) {}

  private decode(from: number, to: number): string {
    return from < to ? this.tok.decode(this.tokens.slice(from, to), { unknownAsId: true }) : '';
  }

  /** Adds a token; returns the text it completes ('' while a character is incomplete). */
  push(token: number): string {
    this.tokens.push(token);
    const before = this.decode(this.prefix, this.read);
    const after = this.decode(this.prefix, this.tokens.length);
    if (after.length > before.length && !after.endsWith('\uFFFD')) {
      this.prefix = this.read;
      this.read = this.tokens.length;
      return after.slice(before.length);
    }
    return '';
  }

  /** Whatever is still held back (an incomplete character at the very end), once no token follows. */
  flush(): string {
    const before = this.decode(this.prefix, this.read);
    const after = this.decode(this.prefix, this.tokens.length);
    this.prefix = this.read = this.tokens.length;
    return after.length > before.length ? after.slice(before.length) : '';
  }
}

/**
 * Cuts text at the first occurrence of any stop string (OpenAI's `stop`: the stop string itself is not
 * returned). Text that could be the start of a stop string is held back until it is known not to be.
 */
export class StopMatcher {
  private pending = '';
  stopped = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Adds text; returns what can be given out now. */
  feed(text: string): string {
    if (this.stopped) return '';
    this.pending += text;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.pending.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = '';
      return out;
    }
    // Hold back the longest tail that is a proper prefix of some stop string.
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** The text held back, once the output has ended without a stop. */
  flush(): string {
    const out = this.stopped ? '' : this.pending;
    this.pending = '';
    return out;
  }
}

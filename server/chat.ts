// Chat messages to prompt text. With a `chat_template` in the model's tokenizer_config.json (a Jinja
// template, or a list of named ones of which 'default' is used), it is rendered with @huggingface/jinja as
// Hugging Face's apply_chat_template does: messages, add_generation_prompt true, bos_token and eos_token.
// Without one, the fallback below (README, "magicdec serve") is used, with the tokenizer's BOS in front.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { UserError } from '../lib/errors.ts';
import { badRequest } from './errors.ts';
import { type Body, wrongType } from './fields.ts';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
  readonly name?: string;
}

export interface ChatTemplate {
  /** Where the template came from. */
  readonly source: 'tokenizer_config.json' | 'fallback';
  /** The prompt text; `bosInText` says whether it already holds the BOS token (a template's job). */
  render(messages: readonly ChatMessage[]): { text: string; bosInText: boolean };
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool'];

/**
 * The fallback format: one line per message, `role: content`, then `assistant:` for the reply to follow.
 *   system: You are terse.
 *   user: Hello
 *   assistant:
 */
export function fallbackChatText(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant:';
}

function specialName(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return '';
}

export function loadChatTemplate(modelDir: string): ChatTemplate {
  const file = join(modelDir, 'tokenizer_config.json');
  const cfg = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>) : {};
  let source = cfg.chat_template;
  if (Array.isArray(source)) source = (source.find((t) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined)?.template;
  if (source === undefined || source === null) {
    return { source: 'fallback', render: (messages) => ({ text: fallbackChatText(messages), bosInText: false }) };
  }
  if (typeof source !== 'string') throw new UserError(`${file}: chat_template must be a string or a list of {name, template}`);
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new UserError(`${file}: chat_template does not parse: ${(e as Error).message}`);
  }
  const bos = specialName(cfg.bos_token);
  const eos = specialName(cfg.eos_token);
  return {
    source: 'tokenizer_config.json',
    render: (messages) => {
      let text: string;
      try {
        text = template.render({ messages, add_generation_prompt: true, bos_token: bos, eos_token: eos });
      } catch (e) {
        throw badRequest(`the model's chat template refused these messages: ${(e as Error).message}`, 'messages', 'chat_template_error');
      }
      return { text, bosInText: bos !== '' && text.includes(bos) };
    },
  };
}

/** `messages` of a chat request: a non-empty array of {role, content} with text content. */
export function readMessages(body: Body): ChatMessage[] {
  const v = body.messages;
  if (v === undefined || v === null) throw badRequest("'messages' is required", 'messages', 'missing_required_parameter');
  if (!Array.isArray(v)) wrongType('messages', 'an array of messages', v);
  if (v.length === 0) throw badRequest("'messages' must hold at least one message", 'messages', 'invalid_value');
  return v.map((m: unknown, i) => {
    const at = `messages[${i}]`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) wrongType(at, 'an object {role, content}', m);
    const { role, content, name } = m as Record<string, unknown>;
    if (typeof role !== 'string') wrongType(`${at}.role`, 'a string', role);
    if (!ROLES.includes(role)) throw badRequest(`'${at}.role' must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`, `${at}.role`, 'invalid_value');
    let text: string;
    if (typeof content === 'string') text = content;
    else if (Array.isArray(content)) {
      text = content
        .map((part: unknown, j) => {
          const p = part as { type?: unknown; text?: unknown } | null;
          if (typeof p !== 'object' || p === null || p.type !== 'text' || typeof p.text !== 'string') {
            throw badRequest(`'${at}.content[${j}]' must be a text part {type: 'text', text}: this server takes text only`, `${at}.content`, 'invalid_value');
          }
          return p.text;
        })
        .join('');
    } else if ((content === null || content === undefined) && role === 'assistant') text = '';
    else wrongType(`${at}.content`, 'a string or an array of text parts', content);
    if (name !== undefined && typeof name !== 'string') wrongType(`${at}.name`, 'a string', name);
    return { role, content: text, ...(typeof name === 'string' ? { name } : {}) };
  });
}

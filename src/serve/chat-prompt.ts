// Chat messages -> the prompt a model sees. Which rule a request gets, in order:
//   1. the adapter's own training template: the `prompt_style` in its file's training_args
//      (alpaca, plain): the last user message is the instruction (earlier turns and system
//      messages are not part of what such an adapter was trained on, and are dropped);
//   2. the base model's `chat_template` from tokenizer_config.json beside it, rendered with
//      @huggingface/jinja (messages, bos_token, eos_token, add_generation_prompt: true);
//   3. the plain format: one "<role>: <content>" line per message, then "assistant:".
// The prompt text is then encoded with BOS (a template that writes the BOS text itself has it
// replaced by the BOS id).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';
import { atFile, LlamaAdapterError } from '../core/errors.js';
import { stripBom } from '../core/text.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { PROMPT_STYLES, isPromptStyle } from '../train/prompt-styles.js';
import type { ChatMessage } from './schemas.js';
import { badParam } from './errors.js';

export type ChatRule = { kind: 'style'; style: string } | { kind: 'jinja' } | { kind: 'plain' };

const text = (m: ChatMessage): string => (typeof m.content === 'string' ? m.content : m.content.map((p) => (p.type === 'text' ? p.text : '')).join(''));

/** The model's chat template, read once: tokenizer_config.json in the model directory (or beside the model file). */
export class ChatTemplates {
  private readonly template: Template | null;
  private readonly bos: string;
  private readonly eos: string;

  constructor(modelPath: string, tokenizer: Tokenizer) {
    const dir = fs.existsSync(modelPath) && fs.statSync(modelPath).isDirectory() ? modelPath : path.dirname(modelPath);
    const file = path.join(dir, 'tokenizer_config.json');
    let tpl: unknown;
    if (fs.existsSync(file)) {
      try {
        tpl = (JSON.parse(stripBom(fs.readFileSync(file, 'utf8'))) as { chat_template?: unknown }).chat_template;
      } catch (e) {
        throw new LlamaAdapterError(`${file}: invalid JSON (${(e as Error).message})`, { cause: e });
      }
    }
    this.template = typeof tpl === 'string' ? atFile(`${file} (chat_template)`, () => new Template(tpl as string)) : null;
    // the special tokens' text, as the tokenizer (which read them from the same files) knows them
    this.bos = tokenizer.piece(tokenizer.bosId);
    this.eos = tokenizer.piece(tokenizer.eosId);
  }

  /** The rule for a request on an adapter trained with `style` (undefined: the base, or an adapter without one). */
  rule(style: string | undefined): ChatRule {
    if (style && style !== 'none' && isPromptStyle(style)) return { kind: 'style', style };
    return this.template ? { kind: 'jinja' } : { kind: 'plain' };
  }

  /** The prompt text (without BOS) for messages under a rule. */
  render(rule: ChatRule, messages: readonly ChatMessage[]): string {
    if (rule.kind === 'style' && isPromptStyle(rule.style)) {
      const last = [...messages].reverse().find((m) => m.role === 'user');
      if (!last) throw badParam('messages', `messages: this model's adapter was trained on instructions (${rule.style}); a user message is required`);
      return PROMPT_STYLES[rule.style].prompt({ instruction: text(last), input: '' });
    }
    if (rule.kind === 'jinja' && this.template) {
      let out: string;
      try {
        out = this.template.render({
          messages: messages.map((m) => ({ role: m.role, content: text(m) })),
          bos_token: this.bos,
          eos_token: this.eos,
          add_generation_prompt: true,
        });
      } catch (e) {
        throw badParam('messages', `messages: the model's chat template failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      return this.bos && out.startsWith(this.bos) ? out.slice(this.bos.length) : out;
    }
    return `${messages.map((m) => `${m.role}: ${text(m)}`).join('\n')}\nassistant:`;
  }
}

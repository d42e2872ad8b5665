// Prompt styles: how an instruction record becomes the text the model sees before its answer.
// A small registry: `alpaca` (the paper's two templates, byte for byte), `plain` (for story
// models: the instruction on its own line). Chat templates can be added as further entries.

export interface InstructionRecord {
  instruction: string;
  input: string; // '' when the task has no input
  output: string;
  image?: string; // an image file (relative paths: to the data file's folder) for multimodal adapters
}

export interface PromptStyle {
  describe: string;
  /** The prompt text (everything before the response; no BOS). */
  prompt(r: Pick<InstructionRecord, 'instruction' | 'input'>): string;
}

const ALPACA_WITH_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:';
const ALPACA_NO_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:';

function fill(t: string, r: Pick<InstructionRecord, 'instruction' | 'input'>): string {
  // a replacer function, so '$' in the data is never treated as a replacement pattern
  return t.replace('{instruction}', () => r.instruction).replace('{input}', () => r.input);
}

export const PROMPT_STYLES = {
  alpaca: {
    describe: 'Stanford Alpaca / LLaMA-Adapter templates (with and without input)',
    prompt: (r) => fill(r.input ? ALPACA_WITH_INPUT : ALPACA_NO_INPUT, r),
  },
  plain: {
    describe: 'instruction (and input) then a newline; for small story models',
    prompt: (r) => (r.input ? `${r.instruction}\n${r.input}\n` : `${r.instruction}\n`),
  },
} satisfies Record<string, PromptStyle>;

export type PromptStyleName = keyof typeof PROMPT_STYLES;

export function isPromptStyle(s: string): s is PromptStyleName {
  return Object.hasOwn(PROMPT_STYLES, s);
}

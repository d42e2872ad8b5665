// `llama-adapter generate`: stream text from a prompt, optionally through an adapter.

import { Command, Option } from 'commander';
import { trainingPromptStyle } from '../methods/v1/file.js';
import { MultimodalAdapter } from '../methods/v1/multimodal.js';
import { FeatureStore } from '../vision/features.js';
import { PROMPT_STYLES, isPromptStyle } from '../train/prompt-styles.js';
import { check } from '../core/errors.js';
import {
  adapterOptions,
  imageOptions,
  inRange,
  int,
  modelOptions,
  num,
  openAnyAdapter,
  openModel,
  type AdapterFlags,
  type ImageFlags,
  type ModelFlags,
} from './common.js';
import { generate } from '../generate/generate.js';

interface GenerateFlags extends ModelFlags, AdapterFlags, ImageFlags {
  image?: string;
  prompt: string;
  input?: string;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
  seed: number;
  stop: string[];
  adapter?: string;
  force?: boolean;
  template: string;
  json?: boolean;
}

export function generateCommand(): Command {
  const cmd = new Command('generate').description('generate text from a prompt (streams to stdout)');
  imageOptions(adapterOptions(modelOptions(cmd)))
    .option('-p, --prompt <text>', 'prompt text ("" = start from BOS alone)', '')
    .option('--input <text>', 'task input for instruction templates (alpaca "### Input:")')
    .option('-n, --max-tokens <n>', 'new tokens at most', int('--max-tokens', 1), 256)
    .option('-t, --temperature <t>', 'sampling temperature; 0 = greedy', num('--temperature', 0), 0.8)
    .option('--top-p <p>', 'nucleus sampling threshold (1 = off)', inRange('--top-p', 0, 1), 0.95)
    .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', int('--top-k', 0), 0)
    .option('--repetition-penalty <r>', 'penalise tokens already in the context (1 = off)', inRange('--repetition-penalty', 0, 100), 1)
    .option('--seed <n>', 'sampling seed (same seed, same text)', int('--seed', 0), 0)
    .option('--stop <text>', 'stop string (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('-a, --adapter <path>', 'adapter to apply: llama-adapter .safetensors, PEFT directory, official .pth or litgpt lit_model.pth.adapter')
    .option('--force', 'load the adapter even if the base weights fingerprint differs')
    .addOption(
      new Option('--template <style>', "wrap the prompt in a prompt style: auto = the adapter's training style (none without adapter)").default('auto'),
    )
    .option('--json', 'print one JSON object {prompt_ids, ids, text} instead of streaming')
    .option('--image <file>', 'an image (JPEG or PNG) for a multimodal adapter')
    .action(async (f: GenerateFlags) => {
      const model = await openModel(f);
      const opened = f.adapter ? await openAnyAdapter(f.adapter, model, f) : null;
      const adapter = opened?.adapter ?? null;
      check(!f.image || adapter instanceof MultimodalAdapter, `--image ${f.image}: needs a multimodal adapter (-a), trained with an image encoder`);
      let source = adapter;
      if (f.image && adapter instanceof MultimodalAdapter && opened?.encoder) {
        const [feats] = await new FeatureStore(opened.encoder).ofFiles([f.image], ['--image']);
        source = adapter.forImage(feats) as typeof source;
      }
      const style =
        f.template === 'auto' ? ((adapter && trainingPromptStyle(adapter instanceof MultimodalAdapter ? adapter.text : adapter)) ?? 'none') : f.template;
      check(
        style === 'none' || isPromptStyle(style),
        `--template: unknown prompt style "${style}" (expected auto, none, ${Object.keys(PROMPT_STYLES).join(', ')})`,
      );
      const text = style === 'none' || !isPromptStyle(style) ? f.prompt : PROMPT_STYLES[style].prompt({ instruction: f.prompt, input: f.input ?? '' });
      const it = generate(model, text, {
        maxTokens: f.maxTokens,
        temperature: f.temperature,
        topP: f.topP,
        topK: f.topK,
        repetitionPenalty: f.repetitionPenalty,
        seed: f.seed,
        stop: f.stop,
        adapter: source,
      });
      for (;;) {
        const r = await it.next();
        if (r.done) {
          if (f.json) process.stdout.write(`${JSON.stringify({ prompt_ids: r.value.promptIds, ids: r.value.ids, text: r.value.text })}\n`);
          else process.stdout.write('\n');
          break;
        }
        if (!f.json && r.value.text) process.stdout.write(r.value.text);
      }
    });
  return cmd;
}

// `llama-adapter eval scienceqa`: the paper's ScienceQA table for a model (and adapter). Text
// setting (LLaMA-Adapter_T: question, context and the image's caption) by default; with a
// multimodal adapter and --images DIR, each problem with an image gets that image (a problem whose
// image file is missing is an error naming it). Greedy decoding; answers parsed from "The answer is
// (X)" / "The answer is X."; an unparsable answer counts as wrong. `--export-train FILE` writes the
// train split as instruction records (JSONL) for finetune instead.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { check } from '../core/errors.js';
import { generateBatch } from '../generate/generate.js';
import { MultimodalAdapter } from '../methods/v1/multimodal.js';
import type { PromptSource } from '../model/method.js';
import { PROMPT_STYLES } from '../train/prompt-styles.js';
import { extractAnswer, loadLlavaScienceQA, loadScienceQA, SQA_COLUMNS, sqaPrompt, sqaTable, sqaTrainingRecords, type SqaProblem } from '../train/scienceqa.js';
import { FeatureStore } from '../vision/features.js';
import { adapterOptions, imageOptions, int, modelOptions, openAnyAdapter, openModel, type AdapterFlags, type ImageFlags, type ModelFlags } from './common.js';

interface EvalFlags extends ModelFlags, AdapterFlags, ImageFlags {
  data: string;
  split: string;
  adapter?: string;
  captions: boolean;
  images?: string;
  limit?: number;
  batch: number;
  maxTokens: number;
  json?: boolean;
  exportTrain?: string;
}

export function evalCommand(): Command {
  const cmd = new Command('eval').description('evaluate on a benchmark');
  const sqa = new Command('scienceqa').description('ScienceQA accuracy table (NAT SOC LAN TXT IMG NO G1-6 G7-12 Avg)');
  imageOptions(adapterOptions(modelOptions(sqa, false)))
    .option('--data <dir>', 'ScienceQA folder: llava_test_CQM-A.json, problems.json (or problems_first1773.json), pid_splits.json, captions.json', '.')
    .option('--split <name>', 'split for --export-train (the test split is read from the LLaVA file)', 'train')
    .option('-a, --adapter <path>', 'adapter (a multimodal one takes --images)')
    .option('--no-captions', "leave the images' captions out of the context")
    .option('--images <dir>', 'image folder (<id>/image.png): the image setting, with a multimodal adapter')
    .option('--limit <n>', 'only the first n test problems', int('--limit', 1))
    .option('--batch <n>', 'problems decoded together', int('--batch', 1), 32)
    .option('--max-tokens <n>', 'tokens generated per answer', int('--max-tokens', 1), 12)
    .option('--json', 'print the table as JSON')
    .option('--export-train <file>', 'write the --split problems as finetune records (JSONL) and exit')
    .action(async (f: EvalFlags) => {
      const file = (...names: string[]): string => names.map((n) => path.join(f.data, n)).find((p) => fs.existsSync(p)) ?? path.join(f.data, names[0]);
      const problemsFile = file('problems.json', 'problems_first1773.json');
      const captions = f.captions ? file('captions.json') : undefined;
      if (f.exportTrain) {
        const ps = loadScienceQA(problemsFile, file('pid_splits.json'), f.split, captions);
        const recs = sqaTrainingRecords(ps, f.captions, !!f.images);
        const lines = recs.map((r) => JSON.stringify(f.images && r.image ? { ...r, image: path.resolve(f.images, r.image) } : r));
        fs.writeFileSync(f.exportTrain, `${lines.join('\n')}\n`);
        process.stderr.write(`wrote ${recs.length} ${f.split} problems to ${f.exportTrain}\n`);
        return;
      }
      check(f.model, 'eval scienceqa: --model is required (except with --export-train)');
      const model = await openModel(f);
      const opened = f.adapter ? await openAnyAdapter(f.adapter, model, f) : null;
      const mm = opened?.adapter instanceof MultimodalAdapter ? opened.adapter : null;
      check(!f.images || mm, '--images needs a multimodal adapter (-a) trained with an image encoder');
      let ps: SqaProblem[] = loadLlavaScienceQA(file('llava_test_CQM-A.json'), fs.existsSync(problemsFile) ? problemsFile : undefined, captions);
      if (f.limit) ps = ps.slice(0, f.limit);
      const store = mm && f.images && opened?.encoder ? new FeatureStore(opened.encoder) : null;
      const base = mm ? mm.text : (opened?.adapter ?? null);
      const ctx = model.config.maxSeqLen;
      const predicted: (number | null)[] = [];
      for (let i = 0; i < ps.length; i += f.batch) {
        const part = ps.slice(i, i + f.batch);
        const prompts = part.map((p) => {
          const ids = model.tokenizer.encode(PROMPT_STYLES.plain.prompt({ instruction: sqaPrompt(p, f.captions), input: '' }), { bos: true });
          const room = ctx - f.maxTokens;
          return ids.length > room ? [ids[0], ...ids.slice(ids.length - room + 1)] : ids; // keep BOS and the end (choices, "Answer:")
        });
        let sources: (PromptSource | null)[] = part.map(() => base);
        if (store && mm) {
          const withImg = part.map((p, k) => ({ p, k })).filter(({ p }) => p.image);
          const feats = await store.ofFiles(
            withImg.map(({ p }) => path.join(f.images!, p.image!)),
            withImg.map(({ p }) => `ScienceQA problem ${p.id}`),
          );
          sources = part.map(() => mm.text);
          withImg.forEach(({ k }, j) => (sources[k] = mm.forImage(feats[j])));
        }
        const res = await generateBatch(model, prompts, { temperature: 0, maxTokens: f.maxTokens }, sources);
        res.forEach((r, k) => predicted.push(extractAnswer(r.text, part[k].choices.length)));
        process.stderr.write(`\r${Math.min(i + f.batch, ps.length)}/${ps.length}`);
      }
      process.stderr.write('\n');
      const table = sqaTable(ps, predicted);
      const unparsed = predicted.filter((p) => p === null).length;
      if (f.json) {
        process.stdout.write(`${JSON.stringify({ problems: ps.length, unparsed, table })}\n`);
        return;
      }
      process.stdout.write(`| ${SQA_COLUMNS.join(' | ')} |\n|${SQA_COLUMNS.map(() => '---').join('|')}|\n`);
      process.stdout.write(`| ${SQA_COLUMNS.map((c) => (Number.isNaN(table[c].acc) ? 'n/a' : table[c].acc.toFixed(2))).join(' | ')} |\n`);
      process.stdout.write(`| ${SQA_COLUMNS.map((c) => `n=${table[c].n}`).join(' | ')} |\n`);
      process.stdout.write(`${ps.length} problems, ${unparsed} answers unparsable (counted wrong)\n`);
    });
  cmd.addCommand(sqa);
  return cmd;
}

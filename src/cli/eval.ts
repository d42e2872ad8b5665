// `llama-adapter eval scienceqa`: the paper's ScienceQA table for a model (and adapter). Text
// setting (LLaMA-Adapter_T: question, context and the image's caption) by default; with a
// multimodal adapter and --images DIR, each problem with an image gets that image (a problem whose
// image file is missing is an error naming it). Greedy decoding; answers parsed from "The answer is
// (X)" / "The answer is X."; an unparsable answer counts as wrong. `--rank-choices` adds, as a separate
// column, the choice whose answer sentence the model finds most likely (log-likelihood of each).
// `--answer-format letters` writes choices and answers without parentheses (for tokenizers that lack
// them; train and evaluate with the same format). `--export-train FILE` writes the train split as
// instruction records (JSONL) for finetune instead.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { check } from '../core/errors.js';
import { generateBatch } from '../generate/generate.js';
import { MultimodalAdapter } from '../methods/v1/multimodal.js';
import type { PromptSource } from '../model/method.js';
import { continuationLogProbs } from '../generate/likelihood.js';
import type { LlamaModel } from '../model/model.js';
import { PROMPT_STYLES } from '../train/prompt-styles.js';
import {
  extractAnswer,
  loadLlavaScienceQA,
  loadScienceQA,
  SQA_COLUMNS,
  SQA_FORMAT_MARKS,
  SQA_FORMATS,
  sqaPrompt,
  sqaTable,
  sqaTarget,
  sqaTrainingRecords,
  type SqaColumn,
  type SqaFormat,
  type SqaProblem,
} from '../train/scienceqa.js';
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
  answerFormat: SqaFormat;
  rankChoices?: boolean;
}

/** The format's marks that the tokenizer loses (encode then decode), e.g. "()" for tinystories' vocabulary. */
function lostMarks(model: LlamaModel, format: SqaFormat): string {
  return [...SQA_FORMAT_MARKS[format]].filter((c) => !model.tokenizer.decode(model.tokenizer.encode(`x${c}x`)).includes(c)).join('');
}

/** BOS + the end of `ids` when they exceed `room` (the choices and "Answer:" are at the end). */
function fitLeft(ids: number[], room: number): number[] {
  return ids.length > room ? [ids[0], ...ids.slice(ids.length - room + 1)] : ids;
}

/** Print the table as markdown: one row per labelled result. */
function printTables(rows: { label: string; table: Record<SqaColumn, { acc: number; n: number }> }[]): void {
  process.stdout.write(`| | ${SQA_COLUMNS.join(' | ')} |\n|---|${SQA_COLUMNS.map(() => '---').join('|')}|\n`);
  for (const r of rows)
    process.stdout.write(`| ${r.label} | ${SQA_COLUMNS.map((c) => (Number.isNaN(r.table[c].acc) ? 'n/a' : r.table[c].acc.toFixed(2))).join(' | ')} |\n`);
  process.stdout.write(`| n | ${SQA_COLUMNS.map((c) => rows[0].table[c].n).join(' | ')} |\n`);
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
    .addOption(
      new Option('--answer-format <f>', 'paper: "(A) ..." / "The answer is (A)."; letters: "A. ..." / "The answer is A." (tokenizers without parentheses)')
        .choices([...SQA_FORMATS])
        .default('paper'),
    )
    .option('--rank-choices', "also report the choice whose answer the model finds most likely (log-likelihood; a separate row, not the paper's metric)")
    .option('--json', 'print the table as JSON')
    .option('--export-train <file>', 'write the --split problems as finetune records (JSONL) and exit')
    .action(async (f: EvalFlags) => {
      const file = (...names: string[]): string => names.map((n) => path.join(f.data, n)).find((p) => fs.existsSync(p)) ?? path.join(f.data, names[0]);
      const problemsFile = file('problems.json', 'problems_first1773.json');
      const captions = f.captions ? file('captions.json') : undefined;
      if (f.exportTrain) {
        const ps = loadScienceQA(problemsFile, file('pid_splits.json'), f.split, captions);
        const recs = sqaTrainingRecords(ps, f.captions, !!f.images, f.answerFormat);
        const lines = recs.map((r) => JSON.stringify(f.images && r.image ? { ...r, image: path.resolve(f.images, r.image) } : r));
        fs.writeFileSync(f.exportTrain, `${lines.join('\n')}\n`);
        process.stderr.write(`wrote ${recs.length} ${f.split} problems to ${f.exportTrain}\n`);
        return;
      }
      check(f.model, 'eval scienceqa: --model is required (except with --export-train)');
      const model = await openModel(f);
      const lost = lostMarks(model, f.answerFormat);
      if (lost)
        process.stderr.write(
          `llama-adapter: the tokenizer (${model.tokenizer.path}) has no token for "${lost}": in --answer-format ${f.answerFormat} they become <unk>, which decodes to nothing; --answer-format letters avoids them\n`,
        );
      const opened = f.adapter ? await openAnyAdapter(f.adapter, model, f) : null;
      const mm = opened?.adapter instanceof MultimodalAdapter ? opened.adapter : null;
      check(!f.images || mm, '--images needs a multimodal adapter (-a) trained with an image encoder');
      let ps: SqaProblem[] = loadLlavaScienceQA(file('llava_test_CQM-A.json'), fs.existsSync(problemsFile) ? problemsFile : undefined, captions);
      if (f.limit) ps = ps.slice(0, f.limit);
      const store = mm && f.images && opened?.encoder ? new FeatureStore(opened.encoder) : null;
      const base = mm ? mm.text : (opened?.adapter ?? null);
      const ctx = model.config.maxSeqLen;
      const predicted: (number | null)[] = [];
      const ranked: number[] = [];
      for (let i = 0; i < ps.length; i += f.batch) {
        const part = ps.slice(i, i + f.batch);
        const texts = part.map((p) => PROMPT_STYLES.plain.prompt({ instruction: sqaPrompt(p, f.captions, f.answerFormat), input: '' }));
        const prompts = texts.map((t) => fitLeft(model.tokenizer.encode(t, { bos: true }), ctx - f.maxTokens));
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
        if (f.rankChoices)
          part.forEach((p, k) => {
            // each choice's answer sentence after the prompt, tokenized as training does (the joint
            // encoding's tokens after the prompt's common prefix)
            const alone = model.tokenizer.encode(texts[k], { bos: true });
            const rows = p.choices.map((_, c) => {
              const full = model.tokenizer.encode(texts[k] + sqaTarget(p, f.answerFormat, c), { bos: true });
              let q = 0;
              while (q < alone.length && q < full.length && alone[q] === full[q]) q++;
              const continuation = full.slice(q);
              return { prompt: fitLeft(full.slice(0, q), ctx - continuation.length), continuation, source: sources[k] };
            });
            const lp = continuationLogProbs(model, rows);
            ranked.push(lp.indexOf(Math.max(...lp)));
          });
        process.stderr.write(`\r${Math.min(i + f.batch, ps.length)}/${ps.length}`);
      }
      process.stderr.write('\n');
      const table = sqaTable(ps, predicted);
      const rankTable = f.rankChoices ? sqaTable(ps, ranked) : null;
      const unparsed = predicted.filter((p) => p === null).length;
      // how often each letter was answered (a model that answers one letter everywhere sits near the random baseline)
      const letters = Object.fromEntries([...'ABCDE'].map((l, k) => [l, predicted.filter((p) => p === k).length]));
      if (f.json) {
        process.stdout.write(`${JSON.stringify({ problems: ps.length, unparsed, letters, table, ...(rankTable ? { ranked: rankTable } : {}) })}\n`);
        return;
      }
      printTables([{ label: 'generated answer', table }, ...(rankTable ? [{ label: 'most likely choice (log-likelihood)', table: rankTable }] : [])]);
      process.stdout.write(
        `${ps.length} problems, ${unparsed} answers unparsable (counted wrong); answered ${Object.entries(letters)
          .map(([l, k]) => `${l} ${k}`)
          .join(', ')}\n`,
      );
    });
  cmd.addCommand(sqa);
  return cmd;
}

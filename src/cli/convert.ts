// `llama-adapter convert ADAPTER --to peft|official|llama-adapter OUT`: rewrite an adapter of any
// readable format in another. With --model the adapter is first loaded onto that base (and
// checked against it); writing this library's format needs it (the file names its base).
// `llama-adapter convert MODEL --to gguf [--type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q4_k|q6_k] OUT.gguf`:
// a base model of any readable format (HF directory, llama2.c, GGUF) with its tokenizer as a GGUF
// file llama.cpp loads.

import * as path from 'node:path';
import { Command, Option } from 'commander';
import { LlamaAdapterError } from '../core/errors.js';
import { GGUF_WRITE_TYPES, writeGgufModel, type GgufWriteType } from '../formats/gguf.js';
import { readModelFile } from '../formats/registry.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { fromAdapter } from '../methods/v1/interop/tensors.js';
import { loadAdapter, readAdapterTensors, WRITE_FORMATS, writeAdapterAs, type WriteFormat } from '../methods/v1/interop/registry.js';
import { adapterLoadOptions, adapterOptions, modelOptions, openModel, type AdapterFlags, type ModelFlags } from './common.js';

interface ConvertFlags extends Partial<ModelFlags>, AdapterFlags {
  to: WriteFormat | 'gguf';
  type: GgufWriteType;
  force?: boolean;
}

export function convertCommand(): Command {
  const cmd = new Command('convert').description(
    'convert an adapter between formats (this library, PEFT (a directory), official LLaMA-Adapter v1 (.pth)), or a base model to GGUF (--to gguf)',
  );
  adapterOptions(modelOptions(cmd, false))
    .argument('<adapter>', 'adapter: llama-adapter .safetensors, PEFT directory, official .pth or litgpt lit_model.pth.adapter; with --to gguf a model')
    .argument('<out>', 'where to write it (a directory for PEFT)')
    .addOption(new Option('--to <format>', 'output format').choices([...WRITE_FORMATS, 'gguf']).makeOptionMandatory())
    .addOption(new Option('--type <type>', 'GGUF tensor type of the matrices (norms stay F32)').choices([...GGUF_WRITE_TYPES]).default('f32'))
    .option('--force', 'load a llama-adapter file even if the base weights fingerprint differs')
    .action(async (src: string, out: string, f: ConvertFlags) => {
      if (f.to === 'gguf') {
        const mf = readModelFile(src, { checkTensors: f.checkTensors });
        const tokPath = f.tokenizer ?? mf.tokenizerPath;
        if (!tokPath) throw new LlamaAdapterError(`${src}: no tokenizer found beside the model (pass --tokenizer PATH): a GGUF file carries its tokenizer`);
        writeGgufModel(out, mf.config, mf.weights, await loadTokenizer(tokPath), f.type, path.basename(src));
        process.stderr.write(`llama-adapter: wrote ${out} (GGUF, ${f.type})\n`);
        return;
      }
      const load = adapterLoadOptions(f);
      let notes: string[];
      if (f.model) {
        const model = await openModel(f as ModelFlags);
        const a = loadAdapter(src, model, { ...load, force: f.force });
        notes = writeAdapterAs(fromAdapter(a, src), f.to as WriteFormat, out, { host: model, baseModel: f.model });
      } else {
        notes = writeAdapterAs(readAdapterTensors(src, load), f.to as WriteFormat, out);
      }
      for (const n of notes) process.stderr.write(`llama-adapter: note: ${n}\n`);
      process.stderr.write(`llama-adapter: wrote ${out} (${f.to})\n`);
    });
  return cmd;
}

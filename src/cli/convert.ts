// `llama-adapter convert ADAPTER --to peft|official|llama-adapter OUT`: rewrite an adapter of any
// readable format in another. With --model the adapter is first loaded onto that base (and
// checked against it); writing this library's format needs it (the file names its base).

import { Command, Option } from 'commander';
import { fromAdapter } from '../methods/v1/interop/tensors.js';
import { loadAdapter, readAdapterTensors, WRITE_FORMATS, writeAdapterAs, type WriteFormat } from '../methods/v1/interop/registry.js';
import { adapterLoadOptions, adapterOptions, modelOptions, openModel, type AdapterFlags, type ModelFlags } from './common.js';

interface ConvertFlags extends Partial<ModelFlags>, AdapterFlags {
  to: WriteFormat;
  force?: boolean;
}

export function convertCommand(): Command {
  const cmd = new Command('convert').description('convert an adapter between formats: this library, PEFT (a directory) and official LLaMA-Adapter v1 (.pth)');
  adapterOptions(modelOptions(cmd, false))
    .argument('<adapter>', 'adapter: llama-adapter .safetensors, PEFT directory, official .pth or litgpt lit_model.pth.adapter')
    .argument('<out>', 'where to write it (a directory for PEFT)')
    .addOption(new Option('--to <format>', 'output format').choices([...WRITE_FORMATS]).makeOptionMandatory())
    .option('--force', 'load a llama-adapter file even if the base weights fingerprint differs')
    .action(async (src: string, out: string, f: ConvertFlags) => {
      const load = adapterLoadOptions(f);
      let notes: string[];
      if (f.model) {
        const model = await openModel(f as ModelFlags);
        const a = loadAdapter(src, model, { ...load, force: f.force });
        notes = writeAdapterAs(fromAdapter(a, src), f.to, out, { host: model, baseModel: f.model });
      } else {
        notes = writeAdapterAs(readAdapterTensors(src, load), f.to, out);
      }
      for (const n of notes) process.stderr.write(`llama-adapter: note: ${n}\n`);
      process.stderr.write(`llama-adapter: wrote ${out} (${f.to})\n`);
    });
  return cmd;
}

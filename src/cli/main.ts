// The `llama-adapter` command line: generate, finetune, inspect, serve, convert, eval, task. (The demo is an application of
// its own, apps/demo; benchmarks are bench/.)

import { Command } from 'commander';
import { convertCommand } from './convert.js';
import { evalCommand } from './eval.js';
import { finetuneCommand } from './finetune.js';
import { generateCommand } from './generate.js';
import { inspectCommand } from './inspect.js';
import { serveCommand } from './serve.js';
import { taskCommand } from './task.js';
import { reportError } from './common.js';

const program = new Command('llama-adapter')
  .description('LLaMA-Adapter: zero-init gated adaption prompts for frozen LLaMA models')
  .option('--verbose', 'print stack traces on errors')
  .showHelpAfterError();
program.addCommand(generateCommand());
program.addCommand(finetuneCommand());
program.addCommand(inspectCommand());
program.addCommand(serveCommand());
program.addCommand(convertCommand());
program.addCommand(evalCommand());
program.addCommand(taskCommand());

const verbose = process.argv.includes('--verbose');
program.parseAsync(process.argv).catch((e: unknown) => reportError(e, verbose));

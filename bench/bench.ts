// `npm run bench -- --config NAME|PATH [...]`: the benchmark command (flags in cli.ts).

import { benchCommand } from './cli.js';
import { reportError } from '../src/cli/common.js';

const cmd = benchCommand().name('bench').showHelpAfterError();
cmd.parseAsync(process.argv).catch((e: unknown) => reportError(e, process.argv.includes('--verbose')));

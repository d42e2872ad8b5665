// `npm run bench -- --config NAME|PATH [...]`: the same command as `llama-adapter bench`, run
// standalone (flags are defined once, in src/cli/bench.ts).

import { benchCommand } from '../src/cli/bench.js';
import { reportError } from '../src/cli/common.js';

const cmd = benchCommand().name('bench').showHelpAfterError();
cmd.parseAsync(process.argv).catch((e: unknown) => reportError(e, process.argv.includes('--verbose')));

// Entry point of the demo application (`npm run demo -- [flags]`): parses the flags (cli.ts) and runs it.

import { reportError } from '../../src/cli/common.js';
import { demoCommand } from './cli.js';

const cmd = demoCommand().name('demo').showHelpAfterError();
cmd.parseAsync(process.argv).catch((e: unknown) => reportError(e, process.argv.includes('--verbose')));

#!/usr/bin/env node
// The `llama-adapter` command: runs the compiled CLI (npm run build writes dist/).
import '../dist/src/cli/main.js';

#!/usr/bin/env node
// Capra's command line; the code lives in dist/ (built by `npm install` in the
// repository, or shipped compiled in the npm package).
import { main } from '../dist/orchestrator/src/cli/main.js';

await main(process.argv.slice(2));

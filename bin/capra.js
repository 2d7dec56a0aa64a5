#!/usr/bin/env node
// Capra's command line; the code lives in dist/ (built by `npm install`/`npm run build`).
import { main } from '../dist/orchestrator/src/cli/main.js';

await main(process.argv.slice(2));

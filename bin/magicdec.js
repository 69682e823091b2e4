#!/usr/bin/env node
// The `magicdec` command. TypeScript sources run directly through tsx's loader: there is no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));

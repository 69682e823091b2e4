#!/usr/bin/env node
// The `magicdec` command. TypeScript sources run directly through tsx's loader: there is no build step.
// The loader reads magicdec's own tsconfig.json, whatever directory the command runs in.
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

register({ tsconfig: fileURLToPath(new URL('../tsconfig.json', import.meta.url)) });
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));

// The README stays true: its DSL example is the example spec the CLI tests compile, and its gen reference
// lists exactly the flags gen accepts.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { program } from '../../cli/main.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('README.md', () => {
  it('shows examples/streaming-draft.ts verbatim (from its import on)', () => {
    const example = readFileSync(join(ROOT, 'examples/streaming-draft.ts'), 'utf8');
    const section = README.slice(README.indexOf('## The DSL'));
    const block = /```ts\n([\s\S]*?)```\n/.exec(section)?.[1];
    expect(block).toBe(example.slice(example.indexOf('import ')));
  });

  it('documents every gen flag, and no other', () => {
    const gen = program().commands.find((c) => c.name() === 'gen')!;
    const flags = gen.options.map((o) => o.long!).sort();
    const section = README.slice(README.indexOf('## `magicdec gen`'), README.indexOf('Other commands:'));
    const documented = [...new Set([...section.matchAll(/^\| `(--[a-z-]+)/gm)].map((m) => m[1]))].sort();
    expect(documented).toEqual(flags);
  });

  for (const name of ['run', 'check', 'serve', 'bench', 'bench-serve']) {
    it(`documents every ${name} flag, and no other`, () => {
      const cmd = program().commands.find((c) => c.name() === name)!;
      const flags = cmd.options.map((o) => o.long!).sort();
      const from = README.indexOf(`## \`magicdec ${name}\``);
      expect(from).toBeGreaterThanOrEqual(0);
      const section = README.slice(from, README.indexOf('\n## ', from + 1));
      const documented = [...new Set([...section.matchAll(/^\| `(--[a-z-]+)/gm)].map((m) => m[1]))].sort();
      expect(documented).toEqual(flags);
    });
  }

  it('names the bench and test:gpu scripts as package.json defines them', () => {
    const scripts = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts;
    expect(scripts.bench).toBe('node bin/magicdec.js bench');
    expect(README).toContain('npm run bench');
    expect(README).toContain(`\`npm run test:gpu\` does both steps (\`${scripts['test:gpu']}\`)`);
  });

  it('has CI run the quick start and the test command as the README gives them, installing nothing before them', () => {
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    const code = ci.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
    expect(code).toContain('npm ci && npm start');
    expect(code).toMatch(/^npm ci\nnpm test\n/m);
    const [before, after] = code.split(/^npm ci\nnpm test\n/m);
    expect(before).not.toMatch(/apt-get|apt |pip |curl |wget /);
    // After the tests, only the fuzz job's clang, in the README's own words.
    const installs = [...after.matchAll(/apt-get install .*/g)].map((m) => m[0].replace(/ -y| -qq| --no-install-recommends| >\/dev\/null/g, ''));
    expect(installs).toEqual(['apt-get install clang-14 libclang-rt-14-dev']);
    expect(README.replace(/\s+/g, ' ')).toContain('`apt-get install clang-14 libclang-rt-14-dev`');
    expect(after).not.toMatch(/pip |curl |wget /);
    expect(after.trim().split('\n').pop()).toBe('npm run fuzz');
    // The quick start's commands are the README's first commands.
    expect(README.indexOf('```sh')).toBe(README.indexOf('## Quick start') + README.slice(README.indexOf('## Quick start')).indexOf('```sh'));
    expect(README.indexOf('```')).toBe(README.indexOf('```sh\nnpm ci && npm start'));
  });

  it('gives the quick start as exactly two command lines', () => {
    const quick = README.slice(README.indexOf('## Quick start'), README.indexOf('## The DSL'));
    expect(/```sh\n([\s\S]*?)```/.exec(quick)?.[1]).toBe('npm ci && npm start\nnpm test\n');
  });
});

// The TypeScript import graph (`npm run graph`, madge) has no cycles, and the pipeline flows one way:
// the DSL and the compiler never import the commands, the benchmark, the scripts or the tests; the
// library layer (lib/) and the benchmark (bench/) never import the commands (cli/), which hold commands
// only; the server (server/) sits on lib/ and below, and only cli/ imports it (docs/ARCHITECTURE.md,
// "Folder layout").
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const run = promisify(execFile);

/** The graph `npm run graph` draws, as file -> files it imports (madge --json with the script's arguments). */
async function importGraph(): Promise<Record<string, string[]>> {
  const script: string = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')).scripts.graph;
  const [cmd, ...args] = script.split(/\s+/);
  expect(cmd).toBe('madge');
  const { stdout } = await run(process.execPath, [resolve(ROOT, 'node_modules/madge/bin/cli.js'), ...args, '--json'], { cwd: ROOT, maxBuffer: 64 << 20 });
  return JSON.parse(stdout);
}

/** Every cycle's files, found by depth-first search; [] when the graph is acyclic. */
function cycles(graph: Record<string, string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (f: string) => {
    state.set(f, 'open');
    stack.push(f);
    for (const g of graph[f] ?? []) {
      if (state.get(g) === 'open') found.push([...stack.slice(stack.indexOf(g)), g]);
      else if (!state.has(g)) visit(g);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of Object.keys(graph)) if (!state.has(f)) visit(f);
  return found;
}

describe('import graph', () => {
  it('has no cycles; dsl/ and codegen/ import nothing downstream of them, lib/ and bench/ nothing from cli/', async () => {
    const graph = await importGraph();
    expect(Object.keys(graph).length).toBeGreaterThan(100);
    expect(cycles(graph).map((c) => c.join(' -> '))).toEqual([]);
    const upstream = /^(dsl|codegen)\//;
    const downstream = /^(cli|bench|scripts|test|lib|server|bin|examples)\//;
    const wrong = Object.entries(graph).flatMap(([f, deps]) => (upstream.test(f) ? deps.filter((d) => downstream.test(d)).map((d) => `${f} -> ${d}`) : []));
    expect(wrong).toEqual([]);
    // lib/ is what cli/ and bench/ share; neither it nor bench/ may reach back into the commands.
    expect(Object.keys(graph).filter((f) => f.startsWith('lib/')).length).toBeGreaterThan(5);
    const intoCli = Object.entries(graph).flatMap(([f, deps]) => (/^(lib|bench)\//.test(f) ? deps.filter((d) => d.startsWith('cli/')).map((d) => `${f} -> ${d}`) : []));
    expect(intoCli).toEqual([]);
    // lib/ sits below the benchmark too.
    const libDown = Object.entries(graph).flatMap(([f, deps]) => (f.startsWith('lib/') ? deps.filter((d) => /^(bench|scripts|test|bin|examples)\//.test(d)).map((d) => `${f} -> ${d}`) : []));
    expect(libDown).toEqual([]);
    // server/ is built on lib/; it never reaches the commands, the benchmark or the tests, nor does lib/ reach it.
    expect(Object.keys(graph).filter((f) => f.startsWith('server/')).length).toBeGreaterThan(5);
    const serverWrong = Object.entries(graph).flatMap(([f, deps]) =>
      f.startsWith('server/') ? deps.filter((d) => /^(cli|bench|scripts|test|bin|examples)\//.test(d)).map((d) => `${f} -> ${d}`) : /^(lib|bench)\//.test(f) ? deps.filter((d) => d.startsWith('server/')).map((d) => `${f} -> ${d}`) : [],
    );
    expect(serverWrong).toEqual([]);
  }, 120_000);
});

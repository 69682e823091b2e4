// The command tree's contract with its users: an unknown command is an error naming the known ones (never
// the top-level help with exit 0), and every subcommand's --help states each flag's default.
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { memoryIo } from '../../lib/io.ts';
import { main, program } from '../../cli/main.ts';

function commands(c: Command, path: string[] = []): { path: string[]; cmd: Command }[] {
  const here = path.length ? [{ path, cmd: c }] : [];
  return [...here, ...c.commands.flatMap((s) => commands(s, [...path, s.name()]))];
}

describe('magicdec commands', () => {
  it.each([['nosuch'], ['nosuch', '--help'], ['gen2', 'spec.ts'], ['model', 'nosuch', '--help']])(
    'refuses the unknown command %s in one line naming the known ones, exit 1',
    async (...argv) => {
      const io = memoryIo();
      expect(await main(argv, io)).toBe(1);
      expect(io.out()).toBe('');
      const err = io.err();
      expect(err.trimEnd().split('\n')).toHaveLength(1);
      expect(err).toContain(`unknown command '${argv.filter((a) => !a.startsWith('-')).slice(0, argv[0] === 'model' ? 2 : 1).join(' ')}'`);
      const known = argv[0] === 'model' ? ['random'] : ['gen', 'regen', 'demo', 'run', 'model'];
      for (const name of known) expect(err).toContain(name);
    },
  );

  it('still prints help for --help, help and help <command> (exit 0)', async () => {
    for (const argv of [['--help'], ['help'], ['help', 'run'], ['model', '--help']]) {
      const io = memoryIo();
      expect(await main(argv, io)).toBe(0);
      expect(io.out()).toMatch(/^Usage: magicdec/);
    }
  });

  it("every subcommand's --help lists every flag with its default (or says it is required)", async () => {
    const tree = commands(program()).filter(({ cmd }) => cmd.name() !== 'help');
    expect(tree.map((t) => t.path.join(' '))).toEqual(expect.arrayContaining(['gen', 'run', 'check', 'demo', 'regen', 'model random']));
    for (const { path, cmd } of tree) {
      const io = memoryIo();
      expect(await main([...path, '--help'], io)).toBe(0);
      const help = io.out();
      for (const o of cmd.options) {
        expect(help, `${path.join(' ')} --help lists ${o.long}`).toContain(o.long!);
        if (!(o.required || o.optional)) continue;  // a switch: off unless given
        const start = help.indexOf(o.flags);
        const next = help.slice(start + o.flags.length).search(/\n\s{2}-/);
        const entry = help.slice(start, next < 0 ? undefined : start + o.flags.length + next);
        expect(entry, `${path.join(' ')} ${o.long}: ${entry}`).toMatch(/default|required/);
      }
    }
  });
});

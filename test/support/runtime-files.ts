// Crafting broken model directories from a valid one: copy it, then break the copy.
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A copy of the model directory `from` at `to`. */
export function copyModel(from: string, to: string): string {
  cpSync(from, to, { recursive: true });
  return to;
}

export function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = join(dir, 'config.json');
  const c = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  writeFileSync(file, JSON.stringify(c));
}

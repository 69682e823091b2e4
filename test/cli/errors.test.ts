// How failures are printed: user errors as one line, internal errors with their stack.
import { describe, expect, it } from 'vitest';
import { EXIT_INTERNAL, EXIT_USER, reportError, UserError } from '../../lib/errors.ts';
import { memoryIo } from '../../lib/io.ts';
import { BuildError } from '../../codegen/build.ts';

describe('reportError', () => {
  it('prints a user error without a stack', () => {
    for (const e of [new UserError('bad flag'), new BuildError('bad flag')]) {
      const io = memoryIo();
      expect(reportError(e, io)).toBe(EXIT_USER);
      expect(io.err()).toBe('magicdec: error: bad flag\n');
    }
  });

  it('prints an internal error with its stack', () => {
    const io = memoryIo();
    const e = new TypeError('x is undefined');
    expect(reportError(e, io)).toBe(EXIT_INTERNAL);
    expect(io.err()).toContain('internal error');
    expect(io.err()).toContain(e.stack!);
    expect(io.err()).toMatch(/^\s+at /m);
  });
});

// runtime/generated/md_limits.h carries codegen/limits.ts's model-file limits to the C++ readers; it is
// written by `npm run regen` and must be exactly what the limits render to now.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_INT_LIMITS, LIMITS_HEADER_PATH, MAX_JSON_DEPTH, renderLimitsHeader } from '../../codegen/limits.ts';
import { REPO } from './build-runtime.ts';

describe(LIMITS_HEADER_PATH, () => {
  it('is what codegen/limits.ts renders (run `npm run regen` after changing a limit)', () => {
    expect(readFileSync(join(REPO, LIMITS_HEADER_PATH), 'utf8')).toBe(renderLimitsHeader());
  });

  it('holds every config.json integer limit and the JSON depth', () => {
    const h = renderLimitsHeader();
    for (const [field, max] of Object.entries(CONFIG_INT_LIMITS)) expect(h).toContain(`{"${field}", ${max}},`);
    expect(h).toContain(`kMaxJsonDepth = ${MAX_JSON_DEPTH};`);
  });
});

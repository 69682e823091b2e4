// RoPE inverse frequencies, in float64, with the model's rope scaling applied (as Hugging Face defines
// them). Kernels bake this table and compute angles in double, so positions up to 128K stay accurate.
import type { ModelConfig } from '../dsl/models.ts';

export function ropeInvFreq(m: ModelConfig): number[] {
  const half = m.headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / Math.pow(m.ropeTheta, (2 * i) / m.headDim));
  const s = m.ropeScaling;
  if (!s) return base;
  if (s.type === 'linear') return base.map((f) => f / s.factor);
  // Llama 3.1: keep high frequencies, divide low ones by `factor`, interpolate smoothly in between.
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const original = s.originalMaxPositionEmbeddings ?? 8192;
  const lowWavelen = original / low;
  const highWavelen = original / high;
  return base.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (original / wavelen - low) / (high - low);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}

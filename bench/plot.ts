// `magicdec bench`'s chart as SVG: a Vega-Lite spec compiled to Vega and rendered headless by vega's SVG
// renderer (no browser, no canvas; text widths are estimated, which is fine for axis labels). Top row:
// speculative over autoregressive tokens/s against batch, one panel per context, measured and as the cost
// model predicts from the measured step ratios and acceptance. Bottom row: achieved bandwidth per kernel class (attention:
// KV bytes over attention time; GEMM: weight bytes over GEMM time) as a fraction of the run's triad.
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { PointMetrics } from './metrics.ts';

/** The model's name as every table and chart shows it: synthetic models say so. */
export function modelLabel(p: Pick<PointMetrics, 'model' | 'synthetic'>): string {
  return p.synthetic ? `${p.model} (synthetic)` : p.model;
}

function seriesLabel(p: PointMetrics, budgets: number): string {
  return `${modelLabel(p)}, gamma ${p.gamma}${budgets > 1 ? `, budget ${p.budget}` : ''}`;
}

export function chartSpec(points: readonly PointMetrics[], title: string): TopLevelSpec {
  const contexts = [...new Set(points.map((p) => p.context))].sort((a, b) => a - b);
  const batches = [...new Set(points.map((p) => p.batch))].sort((a, b) => a - b);
  const budgets = new Set(points.map((p) => p.budget)).size;
  const batchAxis = {
    field: 'batch',
    type: 'quantitative',
    scale: { type: 'log', base: 2 },
    axis: { values: batches, format: 'd' },
    title: 'batch (sequences)',
  } as const;
  const legend = { orient: 'bottom', direction: 'vertical', labelLimit: 400 } as const;
  const speedup = points.flatMap((p) => [
    { context: p.context, batch: p.batch, series: seriesLabel(p, budgets), how: 'measured', speedup: p.spec.speedup, acceptance: p.spec.acceptance },
    { context: p.context, batch: p.batch, series: seriesLabel(p, budgets), how: 'cost model (measured ratios, acceptance)', speedup: p.spec.predictedSpeedup, acceptance: p.spec.acceptance },
  ]);
  // Bandwidth per kernel at the first fixed gamma and the first budget (AR is the same for every gamma).
  const firstGamma = points.find((p) => p.gamma !== 'auto')?.gamma ?? points[0]?.gamma;
  const firstBudget = points[0]?.budget;
  const kernels = points
    .filter((p) => p.gamma === firstGamma && p.budget === firstBudget)
    .flatMap((p) =>
      (
        [
          ['AR attention', p.ar.traffic.attention.ofTriad],
          ['AR GEMM', p.ar.traffic.gemm.ofTriad],
          ['draft attention', p.spec.draft.attention.ofTriad],
          ['draft GEMM', p.spec.draft.gemm.ofTriad],
          [`verify attention (gamma ${p.gamma})`, p.spec.verify.attention.ofTriad],
          [`verify GEMM (gamma ${p.gamma})`, p.spec.verify.gemm.ofTriad],
        ] as const
      ).map(([kernel, ofTriad]) => ({ context: p.context, batch: p.batch, model: modelLabel(p), kernel, ofTriad })),
    );
  const panel = (context: number) => `context ${context}`;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    vconcat: [
      {
        hconcat: contexts.map((context) => ({
          title: `speculative / autoregressive tokens/s, ${panel(context)}`,
          data: { values: speedup.filter((d) => d.context === context) },
          width: 300,
          height: 220,
          layer: [
            { mark: { type: 'rule', strokeDash: [2, 2], color: 'gray' }, encoding: { y: { datum: 1 } } },
            {
              mark: { type: 'line', point: true },
              encoding: {
                x: batchAxis,
                y: { field: 'speedup', type: 'quantitative', title: 'speedup', scale: { zero: false } },
                color: { field: 'series', type: 'nominal', title: null, legend },
                strokeDash: { field: 'how', type: 'nominal', title: null, legend: { orient: 'bottom' } },
                tooltip: [{ field: 'acceptance', type: 'quantitative' }],
              },
            },
          ],
        })),
      },
      {
        hconcat: contexts.map((context) => ({
          title: `achieved bandwidth / STREAM triad, ${panel(context)}`,
          data: { values: kernels.filter((d) => d.context === context) },
          width: 300,
          height: 220,
          mark: { type: 'line', point: true },
          encoding: {
            x: batchAxis,
            y: { field: 'ofTriad', type: 'quantitative', title: 'fraction of triad', axis: { format: '.0%' } },
            color: { field: 'kernel', type: 'nominal', title: null, legend },
            strokeDash: { field: 'model', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 400 } },
          },
        })),
      },
    ],
  };
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

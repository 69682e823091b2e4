// The benchmark's chart as SVG: a Vega-Lite spec compiled to Vega and rendered headless by vega's SVG
// renderer (no browser, no canvas; text widths are estimated, which is fine for axis labels).
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface PlotPoint {
  /** Series label, e.g. "tiny, sink 4 + window 508". */
  readonly series: string;
  readonly context: number;
  readonly arTokensPerS: number;
  readonly specTokensPerS: number;
  readonly speedup: number;
  readonly acceptance: number;
  /** Achieved bandwidth of an AR step / a draft step as a fraction of the run's triad. */
  readonly arOfTriad: number;
  readonly draftOfTriad: number;
}

export function chartSpec(points: readonly PlotPoint[], title: string): TopLevelSpec {
  const throughput = points.flatMap((p) => [
    { series: p.series, context: p.context, mode: 'autoregressive', tokensPerS: p.arTokensPerS },
    { series: p.series, context: p.context, mode: 'speculative', tokensPerS: p.specTokensPerS },
  ]);
  const traffic = points.flatMap((p) => [
    { series: p.series, context: p.context, step: 'AR step', ofTriad: p.arOfTriad },
    { series: p.series, context: p.context, step: 'draft step', ofTriad: p.draftOfTriad },
  ]);
  const contexts = [...new Set(points.map((p) => p.context))].sort((a, b) => a - b);
  const context = {
    field: 'context',
    type: 'quantitative',
    scale: { type: 'log', base: 2 },
    axis: { values: contexts, format: 'd' },
    title: 'context (tokens per sequence)',
  } as const;
  const legend = { orient: 'bottom', direction: 'vertical', labelLimit: 400 } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    hconcat: [
      {
        title: 'speculative / autoregressive decode tokens/s',
        data: { values: points.map((p) => ({ ...p })) },
        width: 320,
        height: 240,
        layer: [
          { mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' }, encoding: { y: { datum: 1 } } },
          {
            mark: { type: 'line', point: true },
            encoding: {
              x: context,
              y: { field: 'speedup', type: 'quantitative', title: 'speedup', scale: { zero: false } },
              color: { field: 'series', type: 'nominal', title: null, legend },
              tooltip: [{ field: 'acceptance', type: 'quantitative' }],
            },
          },
        ],
      },
      {
        title: 'decode tokens/s (batch, prefill excluded)',
        data: { values: throughput },
        width: 320,
        height: 240,
        mark: { type: 'line', point: true },
        encoding: {
          x: context,
          y: { field: 'tokensPerS', type: 'quantitative', title: 'tokens/s', scale: { type: 'log' } },
          color: { field: 'series', type: 'nominal', title: null, legend },
          strokeDash: { field: 'mode', type: 'nominal', title: null, legend: { orient: 'bottom' } },
        },
      },
      {
        title: 'achieved memory bandwidth / STREAM triad',
        data: { values: traffic },
        width: 320,
        height: 240,
        mark: { type: 'line', point: true },
        encoding: {
          x: context,
          y: { field: 'ofTriad', type: 'quantitative', title: 'fraction of triad', axis: { format: '.0%' } },
          color: { field: 'series', type: 'nominal', title: null, legend },
          strokeDash: { field: 'step', type: 'nominal', title: null, legend: { orient: 'bottom' } },
        },
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

// `import { ... } from 'magicdec'`: everything a spec file uses.
export { attention, kvPolicy, verifier } from './core.ts';
export type { Attention, KvPolicy, Verifier, Params, MaskFn, ScoreFn, KeepFn, AcceptFn, ResidualFn } from './core.ts';
export { deploy } from './deploy.ts';
export type { Deployment, DeployDef, Pass, Shapes, Target, DType } from './deploy.ts';
export { models, modelPresets } from './models.ts';
export type { ModelConfig, RopeScaling } from './models.ts';
export * from './presets.ts';
export { defaultDeployment } from './default.ts';

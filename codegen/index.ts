// `import { ... } from 'magicdec/codegen'`: the compiler as a library — the same pipeline `magicdec gen`
// runs: loadSpec -> planModule -> backend.emit / writeModule -> buildModule.
export { loadSpec, loadSpecText, formatDiagnostic, type Diagnostic } from './frontend/index.ts';
export type { DeploymentIR, PassIR, AttentionIR, PolicyIR, VerifierIR, ParamDecl } from './spec.ts';
export { planModule, type ModulePlan, type PassPlan } from './plan.ts';
export { buildManifest, manifestText, type Manifest } from './manifest.ts';
export { BACKENDS, backendFor } from './backends/index.ts';
export type { Backend, EmittedFile } from './backend.ts';
export { renderModule, writeModule } from './module.ts';
export { buildModule, BuildError, type BuiltModule } from './build.ts';
export { readHfConfig, modelConfigToHf } from './model-config.ts';
export { evaluate } from './interp.ts';
export * as ir from './ir.ts';

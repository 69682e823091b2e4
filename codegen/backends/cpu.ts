// The CPU backend: a ModulePlan -> C++17 sources (OpenMP, fp32 math, bf16/fp16/fp32 storage). Skeletons
// are handlebars templates in templates/cpu; expressions (masks, policies, scores, tile predicates) come
// from the IR through render.ts. Translation units are split so that the build compiles them in parallel.
import type { Backend, EmittedFile } from '../backend.ts';
import type { ModulePlan, PassPlan } from '../plan.ts';
import { renderF32 } from '../render.ts';
import { cDouble, lmHeadShape, passStructName, renderPassFunctions, renderPassStruct, renderTemplate, renderVerifierFunctions, STORAGE } from './common.ts';
import { entryPoints, moduleHeaders, renderModuleExports, sharedChecks, signatures } from './contract.ts';
import { kernelSpecs } from './header.ts';

function common(plan: ModulePlan) {
  return { name: plan.name, hash: plan.hash, sig: signatures(kernelSpecs(plan), { unnamedStream: true }), checks: sharedChecks(plan) };
}

function attentionUnit(plan: ModulePlan, pass: PassPlan): EmittedFile {
  return {
    path: `attn_${pass.pass}.cpp`,
    contents: renderTemplate('cpu/attention.cpp.hbs', {
      ...common(plan),
      pass: pass.pass,
      passFunctions: renderPassFunctions(pass, 'inline'),
      passStruct: renderPassStruct(pass, 'static'),
      passType: passStructName(pass.pass),
      instances: entryPoints(plan, `attn_${pass.pass}`),
    }),
  };
}

export const cpuBackend: Backend = {
  name: 'cpu',
  // Model and plan invariants are planModule's (codegen/plan.ts); the CPU has no limits of its own.
  emit(plan: ModulePlan): EmittedFile[] {
    const base = common(plan);
    return [
      ...moduleHeaders(plan, 'cpu'),
      {
        path: 'md_cpu.h',
        contents: renderTemplate('cpu/md_cpu.h.hbs', {
          ...base,
          dims: plan.dims,
          gamma: plan.gamma,
          maxSeq: plan.maxSeq,
          pageSize: plan.pageSize,
          chunk: plan.chunk,
          maxChunks: plan.maxChunks,
          rmsEps: renderF32(Math.fround(plan.rmsEps)),
          scale: renderF32(plan.scale),
          dtype: plan.deployment.dtype,
          storage: STORAGE[plan.deployment.dtype],
        }),
      },
      { path: 'dense.cpp', contents: renderTemplate('cpu/dense.cpp.hbs', { ...base, invFreq: plan.ropeInvFreq.map(cDouble) }) },
      {
        path: 'gemm.cpp',
        contents: renderTemplate('cpu/gemm.cpp.hbs', {
          ...base,
          dtype: plan.deployment.dtype,
          f32: plan.deployment.dtype === 'fp32',
          gemms: plan.gemms.map((g) => ({ ...g, instances: entryPoints(plan, `gemm_${g.role}`) })),
          lmHead: lmHeadShape(plan),
          lmHeadArgmax: entryPoints(plan, 'lm_head_argmax'),
        }),
      },
      { path: 'sample.cpp', contents: renderTemplate('cpu/sample.cpp.hbs', { ...base, verifierFunctions: renderVerifierFunctions(plan, 'inline') }) },
      attentionUnit(plan, plan.passes.target),
      attentionUnit(plan, plan.passes.draft),
      { path: 'module.cpp', contents: renderModuleExports(plan, 'cpu') },
    ];
  },
};

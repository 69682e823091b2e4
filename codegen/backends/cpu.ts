// The CPU backend: a ModulePlan -> C++17 sources (OpenMP, fp32 math, bf16/fp16/fp32 storage). Skeletons
// are handlebars templates in templates/cpu; expressions (masks, policies, scores, tile predicates) come
// from the IR through render.ts. Translation units are split so that the build compiles them in parallel.
import { KERNELS, STATUS_CODES, type ArgSpec, type KernelSpec } from '../abi.ts';
import type { Backend, EmittedFile } from '../backend.ts';
import { manifestText } from '../manifest.ts';
import type { ModulePlan, PassPlan } from '../plan.ts';
import { renderF32 } from '../render.ts';
import { cDouble, cStringLiteral, lmHeadShape, passStructName, renderPassFunctions, renderPassStruct, renderTemplate, STORAGE } from './common.ts';
import { renderModuleHeader } from './header.ts';

/** Parameter list of a definition: `stream` is unnamed on CPU (it is ignored, and -Wextra would say so). */
function definitionParams(args: readonly ArgSpec[]): string {
  return args.map((a) => (a.name === 'stream' ? `${a.type} /*stream*/` : `${a.type} ${a.name}`)).join(', ');
}

function spec(name: string): KernelSpec {
  const s = KERNELS.find((k) => k.name === name);
  if (!s) throw new Error(`codegen/abi.ts has no kernel '${name}'`);
  return s;
}

/** Definition signatures by kernel name (and 'gemm', shared by the roles). */
function signatures(): Record<string, string> {
  const sig: Record<string, string> = Object.fromEntries(KERNELS.map((k) => [k.name, definitionParams(k.args)]));
  sig.gemm = definitionParams(spec('gemm_q').args);
  return sig;
}

function common(plan: ModulePlan) {
  return { name: plan.name, hash: plan.hash, sig: signatures() };
}

function instancesOf(plan: ModulePlan, kernel: string) {
  return plan.kernels.filter((k) => k.spec.name === kernel).map((k) => ({ symbol: k.symbol, maxRows: k.maxRows }));
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
      instances: instancesOf(plan, `attn_${pass.pass}`),
      sig: definitionParams(spec(`attn_${pass.pass}`).args),
    }),
  };
}

export const cpuBackend: Backend = {
  name: 'cpu',
  // Model and plan invariants are planModule's (codegen/plan.ts); the CPU has no limits of its own.
  emit(plan: ModulePlan): EmittedFile[] {
    const base = common(plan);
    return [
      { path: 'md_module.h', contents: renderModuleHeader(plan, { backend: 'cpu' }) },
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
          gemms: plan.gemms.map((g) => ({ ...g, instances: instancesOf(plan, `gemm_${g.role}`) })),
          lmHead: lmHeadShape(plan),
          lmHeadArgmax: instancesOf(plan, 'lm_head_argmax'),
        }),
      },
      attentionUnit(plan, plan.passes.target),
      attentionUnit(plan, plan.passes.draft),
      {
        path: 'module.cpp',
        contents: renderTemplate('cpu/module.cpp.hbs', {
          ...base,
          manifest: cStringLiteral(manifestText(plan), '      '),
          statuses: STATUS_CODES,
        }),
      },
    ];
  },
};

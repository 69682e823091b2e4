// Lowering of the DSL's function-valued fields (mask, score, keep, accept, residual) to IR. The function's
// parameters become the variables of FN_VARS by position; `p.name` on the params parameter becomes a
// runtime `param` (or a constant when the descriptor is `const`); identifiers of the closure are evaluated
// statically and must be numbers or booleans. Only a small subset of TypeScript is accepted (docs/DSL.md);
// everything else is a diagnostic at the offending node, and lowering continues to find the others.
import { Node as TsNode, SyntaxKind } from 'ts-morph';
import * as ir from '../ir.ts';
import { MATH_CONSTANTS, MATH_INTRINSICS } from '../ops.ts';
import { FN_VARS, type FnKind, type ParamDecl } from '../spec.ts';
import type { Code } from './diagnostics.ts';
import { describe, isFunctionLike, unwrap, type Evaluator } from './evaluate.ts';
import { Env, kindOf, MathNamespace, POISON, type FnVal } from './values.ts';

type IrNode = ir.Node;

/** Position of the params parameter for each kind (accept and residual take none). */
const PARAMS_INDEX: Record<FnKind, number | undefined> = { mask: 2, score: 4, keep: 2, accept: undefined, residual: undefined };

/** What each kind must return. */
const RETURNS: Record<FnKind, 'bool' | 'number'> = { mask: 'bool', score: 'number', keep: 'bool', accept: 'bool', residual: 'number' };

const ACCEPTED =
  'accepted: numbers, booleans, the parameters, p.<param>, numeric consts of the enclosing scope, Infinity, Math.* intrinsics and constants, ' +
  'unary - + !, arithmetic + - * / % **, comparisons, && ||, ?:, and block bodies of const / if-return / return';

export interface LowerOptions {
  readonly params: readonly ParamDecl[];
  readonly const: boolean;
}

type Report = (code: Code, message: string, node: TsNode) => void;

/** The params parameter in scope (a marker distinct from any IR node). */
const PARAMS = Symbol('params');
type Binding = IrNode | typeof PARAMS | undefined;

class Lowerer {
  /** Parameters and local consts of the function being lowered, by declaration; undefined = had errors. */
  private readonly scope = new Map<TsNode, Binding>();

  constructor(
    private readonly ev: Evaluator,
    private readonly report: Report,
    private readonly closure: Env,
    private readonly opts: LowerOptions,
  ) {}

  bind(decl: TsNode, b: Binding): void {
    this.scope.set(decl, b);
  }

  private fail(code: Code, message: string, node: TsNode): undefined {
    this.report(code, message, node);
    return undefined;
  }

  /** Run an IR builder; its TypeErrors become diagnostics at `node`. */
  private build(node: TsNode, what: string, f: () => IrNode): IrNode | undefined {
    try {
      return f();
    } catch (e) {
      if (e instanceof TypeError) return this.fail('MD1407', `${what}: ${e.message}`, node);
      throw e;
    }
  }

  expr(n: TsNode): IrNode | undefined {
    const e = unwrap(n);
    switch (e.getKind()) {
      case SyntaxKind.NumericLiteral:
        return ir.constant(Number(e.getText().replace(/_/g, '')));
      case SyntaxKind.TrueKeyword:
        return ir.constant(true);
      case SyntaxKind.FalseKeyword:
        return ir.constant(false);
      case SyntaxKind.Identifier:
        return this.identifier(e);
      default:
        break;
    }
    if (TsNode.isPrefixUnaryExpression(e)) return this.prefix(e);
    if (TsNode.isBinaryExpression(e)) return this.binary(e);
    if (TsNode.isConditionalExpression(e)) {
      const c = this.bool(e.getCondition(), 'the condition of ?:');
      const x = this.expr(e.getWhenTrue());
      const y = this.expr(e.getWhenFalse());
      if (!c || !x || !y) return undefined;
      if ((x.ty === 'bool') !== (y.ty === 'bool')) return this.fail('MD1407', `the branches of ?: must both be booleans or both numbers, got ${x.ty} and ${y.ty}`, e);
      return this.build(e, '?:', () => ir.select(c, x, y));
    }
    if (TsNode.isPropertyAccessExpression(e)) return this.member(e);
    if (TsNode.isElementAccessExpression(e)) {
      const base = unwrap(e.getExpression());
      const arg = e.getArgumentExpression();
      if (TsNode.isIdentifier(base) && this.binding(base) === PARAMS && arg && (TsNode.isStringLiteral(arg) || TsNode.isNoSubstitutionTemplateLiteral(arg))) {
        return this.paramRef(arg.getLiteralValue(), arg);
      }
      return this.closureValue(e);
    }
    if (TsNode.isCallExpression(e)) return this.call(e);
    if (isFunctionLike(e)) return this.fail('MD1401', `nested functions are not accepted in a kernel function; ${ACCEPTED}`, e);
    return this.fail('MD1401', `${describe(e)} is not accepted in a kernel function; ${ACCEPTED}`, e);
  }

  /** Lower `n` and require a boolean. */
  private bool(n: TsNode, what: string): IrNode | undefined {
    const x = this.expr(n);
    if (x && x.ty !== 'bool') return this.fail('MD1407', `${what} must be a boolean, got ${x.ty} (compare with a number, e.g. x !== 0)`, n);
    return x;
  }

  private binding(id: TsNode): Binding | 'closure' {
    const r = this.ev.resolve(id);
    if (r.kind === 'decl' && this.scope.has(r.decl)) return this.scope.get(r.decl);
    return 'closure';
  }

  private identifier(id: TsNode): IrNode | undefined {
    const r = this.ev.resolve(id);
    if (r.kind === 'decl' && this.scope.has(r.decl)) {
      const b = this.scope.get(r.decl);
      if (b === PARAMS) return this.fail('MD1411', `the params object '${id.getText()}' cannot be used as a value; read one param with ${id.getText()}.<name>`, id);
      return b;
    }
    return this.closureValue(id);
  }

  /** An expression that does not involve the function's own variables: evaluate it statically. */
  private closureValue(e: TsNode): IrNode | undefined {
    if (TsNode.isIdentifier(e)) {
      const r = this.ev.resolve(e);
      if (r.kind === 'global' && r.name === 'Infinity') return ir.constant(Infinity);
      if (r.kind === 'global' && r.name === 'NaN') return ir.constant(NaN);
    }
    if (this.usesScope(e)) return this.fail('MD1401', `${describe(e)} is not accepted in a kernel function; ${ACCEPTED}`, e);
    const v = this.ev.eval(e, this.closure);
    if (v === POISON) return undefined;
    if (typeof v === 'number' || typeof v === 'boolean') return ir.constant(v);
    if (v instanceof MathNamespace) return this.fail('MD1404', `'Math' can only be used as Math.<intrinsic>(...) or Math.<constant>`, e);
    return this.fail('MD1406', `'${e.getText()}' is ${kindOf(v)}; a kernel function can only use numbers and booleans from its enclosing scope`, e);
  }

  private usesScope(e: TsNode): boolean {
    const ids = TsNode.isIdentifier(e) ? [e] : e.getDescendantsOfKind(SyntaxKind.Identifier);
    return ids.some((id) => {
      const r = this.ev.resolve(id);
      return r.kind === 'decl' && this.scope.has(r.decl);
    });
  }

  private isMath(n: TsNode): boolean {
    const u = unwrap(n);
    if (!TsNode.isIdentifier(u)) return false;
    const r = this.ev.resolve(u);
    return r.kind === 'global' && r.name === 'Math';
  }

  private member(e: TsNode & { getExpression(): TsNode; getName(): string; getNameNode(): TsNode }): IrNode | undefined {
    const base = unwrap(e.getExpression());
    if (this.isMath(base)) {
      const c = MATH_CONSTANTS[e.getName()];
      if (c !== undefined) return ir.constant(c, 'f32');
      if (MATH_INTRINSICS[e.getName()]) return this.fail('MD1404', `Math.${e.getName()} is a function; call it`, e);
      return this.fail('MD1404', `Math.${e.getName()} is not available; constants: ${Object.keys(MATH_CONSTANTS).map((k) => `Math.${k}`).join(', ')}`, e.getNameNode());
    }
    if (TsNode.isIdentifier(base) && this.binding(base) === PARAMS) return this.paramRef(e.getName(), e.getNameNode());
    return this.closureValue(e);
  }

  private paramRef(name: string, at: TsNode): IrNode | undefined {
    const decl = this.opts.params.find((p) => p.name === name);
    if (!decl) {
      const known = this.opts.params.map((p) => p.name);
      return this.fail('MD1405', `no param '${name}' is declared; ${known.length ? `params: ${known.join(', ')}` : "declare it in 'params: { ... }'"}`, at);
    }
    return this.opts.const ? ir.constant(decl.value, decl.ty) : ir.param(decl.name, decl.ty);
  }

  private call(e: TsNode & { getExpression(): TsNode; getArguments(): TsNode[] }): IrNode | undefined {
    const callee = unwrap(e.getExpression());
    if (!TsNode.isPropertyAccessExpression(callee) || !this.isMath(callee.getExpression())) {
      e.getArguments().forEach((a) => this.expr(a));
      return this.fail('MD1410', `only Math.* intrinsics can be called in a kernel function (${Object.keys(MATH_INTRINSICS).map((k) => `Math.${k}`).join(', ')}); inline other functions by hand`, e.getExpression());
    }
    const name = callee.getName();
    const intrinsic = MATH_INTRINSICS[name];
    const args = e.getArguments().map((a) => (TsNode.isSpreadElement(a) ? this.fail('MD1401', `spread arguments are not accepted in a kernel function`, a) : this.expr(a)));
    if (!intrinsic) return this.fail('MD1404', `Math.${name} is not an accepted intrinsic; use one of ${Object.keys(MATH_INTRINSICS).map((k) => `Math.${k}`).join(', ')}`, callee.getNameNode());
    if (args.length !== intrinsic.arity) return this.fail('MD1404', `Math.${name} takes ${intrinsic.arity} argument${intrinsic.arity === 1 ? '' : 's'}, got ${args.length}`, e);
    if (args.some((a) => !a)) return undefined;
    const xs = args as IrNode[];
    const bad = xs.findIndex((x) => x.ty === 'bool');
    if (bad >= 0) return this.fail('MD1407', `Math.${name} needs numbers, got a boolean`, e.getArguments()[bad]!);
    const build = BUILDERS[intrinsic.op];
    if (!build) return this.fail('MD1404', `Math.${name} has no IR builder`, callee.getNameNode());
    return this.build(e, `Math.${name}`, () => build(...xs));
  }

  private prefix(e: TsNode & { getOperatorToken(): SyntaxKind; getOperand(): TsNode }): IrNode | undefined {
    const op = e.getOperatorToken();
    const operand = unwrap(e.getOperand());
    if (op === SyntaxKind.MinusToken && TsNode.isNumericLiteral(operand)) {
      const v = Number(operand.getText().replace(/_/g, ''));
      if (v !== 0) return ir.constant(-v);
    }
    if (op !== SyntaxKind.MinusToken && op !== SyntaxKind.PlusToken && op !== SyntaxKind.ExclamationToken) {
      return this.fail('MD1401', `the operator in '${e.getText()}' is not accepted; unary operators: - + !`, e);
    }
    const x = this.expr(operand);
    if (!x) return undefined;
    if (op === SyntaxKind.ExclamationToken) {
      if (x.ty !== 'bool') return this.fail('MD1407', `'!' needs a boolean, got ${x.ty} (compare with a number instead, e.g. x === 0)`, e);
      return ir.not(x);
    }
    if (x.ty === 'bool') return this.fail('MD1407', `unary '${op === SyntaxKind.MinusToken ? '-' : '+'}' needs a number, got a boolean`, e);
    return op === SyntaxKind.PlusToken ? x : ir.neg(x);
  }

  private binary(e: TsNode & { getLeft(): TsNode; getRight(): TsNode; getOperatorToken(): TsNode }): IrNode | undefined {
    const opTok = e.getOperatorToken();
    const opText = opTok.getText();
    const build = BINARY[opTok.getKind()];
    if (!build) {
      this.expr(e.getLeft());
      this.expr(e.getRight());
      const hint = opText.endsWith('=') && !/[=!<>]=$/.test(opText) ? 'assignment is not accepted (bind a new const instead); ' : '';
      return this.fail('MD1401', `the operator '${opText}' is not accepted in a kernel function; ${hint}operators: + - * / % ** < <= > >= === !== == != && ||`, opTok);
    }
    const a = this.expr(e.getLeft());
    const b = this.expr(e.getRight());
    if (!a || !b) return undefined;
    const [kind, f] = build;
    if (kind === 'logic' && (a.ty !== 'bool' || b.ty !== 'bool')) {
      return this.fail('MD1407', `'${opText}' needs two booleans, got ${a.ty} and ${b.ty} (compare numbers first, e.g. x !== 0)`, e);
    }
    if (kind === 'num' && (a.ty === 'bool' || b.ty === 'bool')) {
      return this.fail('MD1407', `'${opText}' needs two numbers, got ${a.ty} and ${b.ty}`, e);
    }
    if (kind === 'eq' && (a.ty === 'bool') !== (b.ty === 'bool')) {
      return this.fail('MD1407', `'${opText}' compares two numbers or two booleans, got ${a.ty} and ${b.ty}`, e);
    }
    return this.build(e, `'${opText}'`, () => f(a, b));
  }

  /**
   * Lower a statement list to the value it returns: `const` binds, `if (c) <returns>` becomes a select
   * over the rest, and the list must end in a return. Returns undefined (with a diagnostic) on errors.
   */
  statements(stmts: readonly TsNode[], owner: TsNode): IrNode | undefined {
    for (let i = 0; i < stmts.length; i++) {
      const s = stmts[i]!;
      const rest = stmts.slice(i + 1);
      if (TsNode.isEmptyStatement(s)) continue;
      if (TsNode.isVariableStatement(s)) {
        if (s.getDeclarationKind() !== 'const') {
          this.fail('MD1412', `'${s.getDeclarationKind()}' is not accepted in a kernel function; use 'const' (values cannot be reassigned)`, s.getDeclarationKindKeywords()[0] ?? s);
        }
        for (const d of s.getDeclarations()) {
          const name = d.getNameNode();
          const init = d.getInitializer();
          if (!TsNode.isIdentifier(name)) {
            this.fail('MD1403', 'destructuring is not accepted in a kernel function; bind one const per value', name);
            continue;
          }
          this.bind(d, init ? this.expr(init) : this.fail('MD1412', `const '${name.getText()}' needs an initialiser`, d));
        }
        continue;
      }
      if (TsNode.isReturnStatement(s)) {
        if (rest.some((r) => !TsNode.isEmptyStatement(r))) this.fail('MD1409', 'unreachable code after return', rest.find((r) => !TsNode.isEmptyStatement(r))!);
        const x = s.getExpression();
        return x ? this.expr(x) : this.fail('MD1409', 'return needs a value', s);
      }
      if (TsNode.isIfStatement(s)) {
        // A branch that may fall through continues with the statements after the if.
        const thenS = s.getThenStatement();
        const elseS = s.getElseStatement();
        const thenList = statementsOf(thenS);
        const elseList = elseS ? statementsOf(elseS) : [];
        const live = rest.filter((r) => !TsNode.isEmptyStatement(r));
        if (alwaysReturns(thenList) && alwaysReturns(elseList) && live.length) {
          this.fail('MD1409', 'unreachable code after an if/else that returns on both branches', live[0]!);
        }
        const c = this.bool(s.getExpression(), 'the condition of if');
        const then = this.statements(alwaysReturns(thenList) ? thenList : [...thenList, ...rest], thenS);
        const other = this.statements(alwaysReturns(elseList) ? elseList : [...elseList, ...rest], elseS ?? owner);
        if (!c || !then || !other) return undefined;
        if ((then.ty === 'bool') !== (other.ty === 'bool')) {
          return this.fail('MD1407', `the returns on the two sides of this if must both be booleans or both numbers, got ${then.ty} and ${other.ty}`, s);
        }
        return this.build(s, 'if', () => ir.select(c, then, other));
      }
      if (TsNode.isBlock(s)) return this.statements([...s.getStatements(), ...rest], s);
      this.fail('MD1412', `${describe(s)} is not accepted in a kernel function; only 'const' declarations, 'if (c) return a;' and a final 'return' are`, s);
      this.statements(rest, owner); // keep going, to report later errors too
      return undefined;
    }
    return this.fail('MD1409', 'every path must end in a return; add a final return statement', owner);
  }
}

function statementsOf(s: TsNode): TsNode[] {
  return TsNode.isBlock(s) ? s.getStatements() : [s];
}

/** Does every path through these statements end in a return? */
function alwaysReturns(stmts: readonly TsNode[]): boolean {
  return stmts.some((s) => {
    if (TsNode.isReturnStatement(s)) return true;
    if (TsNode.isBlock(s)) return alwaysReturns(s.getStatements());
    if (TsNode.isIfStatement(s)) {
      const e = s.getElseStatement();
      return !!e && alwaysReturns(statementsOf(s.getThenStatement())) && alwaysReturns(statementsOf(e));
    }
    return false;
  });
}

type Builder = (...xs: IrNode[]) => IrNode;
const BUILDERS: Partial<Record<ir.Op, Builder>> = {
  min: ir.min,
  max: ir.max,
  abs: ir.abs,
  floor: ir.floor,
  ceil: ir.ceil,
  trunc: ir.trunc,
  sqrt: ir.sqrt,
  exp: ir.exp,
  log: ir.log,
  tanh: ir.tanh,
  pow: ir.pow,
};

const BINARY: Partial<Record<SyntaxKind, ['num' | 'logic' | 'eq', (a: IrNode, b: IrNode) => IrNode]>> = {
  [SyntaxKind.PlusToken]: ['num', ir.add],
  [SyntaxKind.MinusToken]: ['num', ir.sub],
  [SyntaxKind.AsteriskToken]: ['num', ir.mul],
  [SyntaxKind.SlashToken]: ['num', ir.div],
  [SyntaxKind.PercentToken]: ['num', ir.mod],
  [SyntaxKind.AsteriskAsteriskToken]: ['num', ir.pow],
  [SyntaxKind.LessThanToken]: ['num', ir.lt],
  [SyntaxKind.LessThanEqualsToken]: ['num', ir.le],
  [SyntaxKind.GreaterThanToken]: ['num', ir.gt],
  [SyntaxKind.GreaterThanEqualsToken]: ['num', ir.ge],
  [SyntaxKind.EqualsEqualsEqualsToken]: ['eq', ir.eq],
  [SyntaxKind.EqualsEqualsToken]: ['eq', ir.eq],
  [SyntaxKind.ExclamationEqualsEqualsToken]: ['eq', ir.ne],
  [SyntaxKind.ExclamationEqualsToken]: ['eq', ir.ne],
  [SyntaxKind.AmpersandAmpersandToken]: ['logic', ir.and],
  [SyntaxKind.BarBarToken]: ['logic', ir.or],
};

/**
 * Lower one DSL function to IR. Returns undefined when it had errors (each reported through `report`).
 * `at` is where a problem with the function as a whole (its parameter list, its type) is reported.
 */
export function lowerFunction(fn: FnVal, kind: FnKind, opts: LowerOptions, ev: Evaluator, report: Report): IrNode | undefined {
  const decl = fn.decl as TsNode & { getParameters(): (TsNode & { getNameNode(): TsNode; isRestParameter(): boolean; getInitializer(): TsNode | undefined })[]; getBody(): TsNode | undefined };
  const lw = new Lowerer(ev, report, fn.env, opts);
  const vars = FN_VARS[kind];
  const paramsIndex = PARAMS_INDEX[kind];
  const arity = vars.length + (paramsIndex === undefined ? 0 : 1);
  let ok = true;
  decl.getParameters().forEach((p, i) => {
    const name = p.getNameNode();
    if (i >= arity) {
      ok = false;
      const names = [...vars.map((v) => v[0]), ...(paramsIndex === undefined ? [] : ['params'])];
      report('MD1402', `a ${kind} function takes at most ${arity} parameter${arity === 1 ? '' : 's'} (${names.join(', ')})`, p);
      return;
    }
    if (!TsNode.isIdentifier(name) || p.isRestParameter() || p.getInitializer()) {
      ok = false;
      report('MD1403', `parameters of a ${kind} function must be plain names (no destructuring, rest or defaults); read params as p.<name>`, p);
      return;
    }
    lw.bind(p, i === paramsIndex ? PARAMS : ir.variable(vars[i]![0], vars[i]![1]));
  });
  const body = decl.getBody();
  let result: IrNode | undefined;
  if (!body) result = undefined;
  else if (TsNode.isBlock(body)) result = lw.statements(body.getStatements(), body);
  else result = lw.expr(body);
  if (!result || !ok) return undefined;
  const want = RETURNS[kind];
  if (want === 'bool' && result.ty !== 'bool') {
    report('MD1408', `a ${kind} function must return a boolean, but this one returns ${result.ty}`, body!);
    return undefined;
  }
  if (want === 'number') {
    if (result.ty === 'bool') {
      report('MD1408', `a ${kind} function must return a number, but this one returns a boolean`, body!);
      return undefined;
    }
    return ir.toF32(result);
  }
  return result;
}

// The static partial evaluator: computes the value of the spec's `deploy(...)` expression without running
// user code. It follows identifiers to their declarations (through imports, into dsl/*.ts), evaluates
// literals, object/array literals with spreads, template literals, property access, arithmetic on
// primitives, and calls of ordinary functions with their parameters bound to the evaluated arguments.
// Calls of the DSL primitives are handed to the context, which builds IR descriptors.
import { Node as TsNode, SyntaxKind, type BindingElement, type CallExpression, type Symbol as TsSymbol, type TypeChecker } from 'ts-morph';
import { MATH_CONSTANTS, MATH_INTRINSICS } from '../ops.ts';
import type { Code } from './diagnostics.ts';
import { ArrVal, DescriptorVal, Env, FnVal, kindOf, MATH, MathFnVal, MathNamespace, ModuleVal, ObjVal, POISON, PrimitiveVal, type Slot, type Value } from './values.ts';

export interface EvalContext {
  readonly checker: TypeChecker;
  report(code: Code, message: string, node: TsNode): void;
  /** Which DSL primitive a declaration is, if any (by identity of the declaration, not by name). */
  primitiveOf(decl: TsNode): PrimitiveVal['name'] | undefined;
  callPrimitive(name: PrimitiveVal['name'], args: readonly Slot[], call: CallExpression): Value;
}

/** The globals of the standard library the evaluator and the lowering understand. */
export type GlobalName = 'Math' | 'Infinity' | 'NaN' | 'undefined';

/** What an identifier refers to. */
export type Resolved =
  | { kind: 'decl'; decl: TsNode }
  | { kind: 'global'; name: GlobalName }
  | { kind: 'unresolved'; why: string };

const MAX_CALL_DEPTH = 64;

const FUNCTION_KINDS = new Set([SyntaxKind.ArrowFunction, SyntaxKind.FunctionExpression, SyntaxKind.FunctionDeclaration, SyntaxKind.MethodDeclaration]);

export function isFunctionLike(n: TsNode): boolean {
  return FUNCTION_KINDS.has(n.getKind());
}

/** "a for statement", "a new expression", ... for messages. */
export function describe(n: TsNode): string {
  const words = n.getKindName().replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
  return `${/^[aeiou]/.test(words) ? 'an' : 'a'} ${words}`;
}

/** Strip parentheses and type-only wrappers (as, satisfies, <T>x, x!). */
export function unwrap(n: TsNode): TsNode {
  for (;;) {
    if (TsNode.isParenthesizedExpression(n) || TsNode.isAsExpression(n) || TsNode.isSatisfiesExpression(n) || TsNode.isTypeAssertion(n) || TsNode.isNonNullExpression(n)) {
      n = n.getExpression();
    } else return n;
  }
}

export class Evaluator {
  /** Bindings of evaluated top-level const declarations, by VariableDeclaration. */
  private readonly topLevel = new Map<TsNode, Env>();
  private readonly inProgress = new Set<TsNode>();
  /** Call expressions being evaluated, outermost first (to attribute errors inside dsl/ to user code). */
  readonly callStack: TsNode[] = [];

  constructor(private readonly ctx: EvalContext) {}

  private fail(code: Code, message: string, node: TsNode): typeof POISON {
    this.ctx.report(code, message, node);
    return POISON;
  }

  // ------------------------------------------------------------------------------------ identifiers

  /** The declaration an identifier (or a shorthand property's name) refers to, through aliases. */
  resolve(id: TsNode): Resolved {
    const checker = this.ctx.checker;
    const parent = id.getParent();
    let sym: TsSymbol | undefined =
      parent && TsNode.isShorthandPropertyAssignment(parent) && parent.getNameNode() === id
        ? checker.getShorthandAssignmentValueSymbol(parent)
        : checker.getSymbolAtLocation(id);
    const name = id.getText();
    if (!sym) {
      if (name === 'undefined') return { kind: 'global', name };
      return { kind: 'unresolved', why: `cannot find '${name}'` };
    }
    if (sym.isAlias()) sym = sym.getAliasedSymbol() ?? sym;
    const decl = sym.getValueDeclaration() ?? sym.getDeclarations()[0];
    if (!decl) return { kind: 'unresolved', why: `'${name}' has no declaration the front end can follow` };
    if (decl.getSourceFile().isDeclarationFile()) {
      const g = sym.getName();
      const inStdLib = /^lib\..*\.d\.ts$/.test(decl.getSourceFile().getBaseName());
      if (inStdLib && (g === 'Math' || g === 'Infinity' || g === 'NaN' || g === 'undefined')) {
        return { kind: 'global', name: g };
      }
      return { kind: 'unresolved', why: `'${name}' is declared only in a type declaration file, so it has no value the front end can read` };
    }
    return { kind: 'decl', decl };
  }

  private identifier(id: TsNode, env: Env): Value {
    const r = this.resolve(id);
    if (r.kind === 'unresolved') return this.fail('MD1102', `${r.why}`, id);
    if (r.kind === 'global') return globalValue(r.name, id);
    return this.declValue(r.decl, id, env);
  }

  /** The value of a declaration referenced at `use`. */
  declValue(decl: TsNode, use: TsNode, env: Env): Value {
    const local = env.lookup(decl);
    if (local) return local.value;
    const prim = this.ctx.primitiveOf(decl);
    if (prim) return new PrimitiveVal(prim);
    if (TsNode.isFunctionDeclaration(decl)) return new FnVal(decl, new Env());
    if (TsNode.isSourceFile(decl)) return new ModuleVal(decl);
    if (TsNode.isVariableDeclaration(decl) || TsNode.isBindingElement(decl)) {
      const vd = TsNode.isVariableDeclaration(decl) ? decl : decl.getFirstAncestorByKind(SyntaxKind.VariableDeclaration);
      const stmt = vd?.getVariableStatement();
      if (!vd || !stmt || !TsNode.isSourceFile(stmt.getParent())) {
        return this.fail('MD1102', `'${use.getText()}' is not bound at this point: only top-level consts, parameters and consts of an evaluated function body can be read`, use);
      }
      if (stmt.getDeclarationKind() !== 'const') {
        return this.fail('MD1102', `'${use.getText()}' is declared with '${stmt.getDeclarationKind()}'; only 'const' bindings can be evaluated statically`, use);
      }
      return this.topLevelConst(vd, decl, use);
    }
    if (TsNode.isParameterDeclaration(decl)) {
      return this.fail('MD1102', `parameter '${use.getText()}' has no value here: it is only bound while its function is called`, use);
    }
    return this.fail('MD1102', `'${use.getText()}' refers to ${describe(decl)}; only consts, functions and parameters can be evaluated`, use);
  }

  private topLevelConst(vd: TsNode & { getInitializer(): TsNode | undefined; getNameNode(): TsNode }, decl: TsNode, use: TsNode): Value {
    let env = this.topLevel.get(vd);
    if (!env) {
      if (this.inProgress.has(vd)) return this.fail('MD1106', `'${use.getText()}' is used in its own initialiser (a cyclic const)`, use);
      const init = vd.getInitializer();
      if (!init) return this.fail('MD1102', `'${use.getText()}' has no initialiser`, use);
      this.inProgress.add(vd);
      try {
        env = new Env();
        this.bindName(vd.getNameNode(), { value: this.eval(init, new Env()), node: init }, env, vd);
      } finally {
        this.inProgress.delete(vd);
      }
      this.topLevel.set(vd, env);
    }
    return env.lookup(decl)?.value ?? POISON;
  }

  /** Bind one destructured element to its value, or to its default initializer when the value is undefined. */
  private bindElement(el: BindingElement, value: Value, slot: Slot, env: Env): void {
    const dflt = el.getInitializer();
    const bound: Slot = value === undefined && dflt ? { value: this.eval(dflt, env), node: dflt } : { value, node: slot.node };
    this.bindName(el.getNameNode(), bound, env, el);
  }

  /** Bind a declaration's name (identifier or destructuring pattern) to a value. */
  bindName(name: TsNode, slot: Slot, env: Env, decl: TsNode): void {
    if (TsNode.isIdentifier(name)) {
      env.bind(decl, slot);
      return;
    }
    if (TsNode.isObjectBindingPattern(name)) {
      for (const el of name.getElements()) {
        if (el.getDotDotDotToken()) {
          this.fail('MD1105', 'rest elements in destructuring are not supported; name each property', el);
          env.bind(el, { value: POISON, node: el });
          continue;
        }
        const keyNode = el.getPropertyNameNode() ?? el.getNameNode();
        const key = TsNode.isComputedPropertyName(keyNode) ? this.eval(keyNode.getExpression(), env) : propertyKey(keyNode);
        const v = slot.value !== POISON && key !== POISON ? this.member(slot.value, String(key), el, false) : POISON;
        this.bindElement(el, v, slot, env);
      }
      return;
    }
    if (TsNode.isArrayBindingPattern(name)) {
      name.getElements().forEach((el, i) => {
        if (TsNode.isOmittedExpression(el)) return;
        if (el.getDotDotDotToken()) {
          this.fail('MD1105', 'rest elements in destructuring are not supported; name each element', el);
          env.bind(el, { value: POISON, node: el });
          return;
        }
        const v = slot.value === POISON ? POISON : this.member(slot.value, String(i), el, false);
        this.bindElement(el, v, slot, env);
      });
      return;
    }
    this.fail('MD1105', 'unsupported binding pattern', name);
  }

  // ------------------------------------------------------------------------------------ expressions

  eval(expr: TsNode, env: Env): Value {
    const e = unwrap(expr);
    switch (e.getKind()) {
      case SyntaxKind.NumericLiteral:
        return Number(e.getText().replace(/_/g, ''));
      case SyntaxKind.StringLiteral:
      case SyntaxKind.NoSubstitutionTemplateLiteral:
        return (e as TsNode & { getLiteralValue(): string }).getLiteralValue();
      case SyntaxKind.TrueKeyword:
        return true;
      case SyntaxKind.FalseKeyword:
        return false;
      case SyntaxKind.NullKeyword:
        return null;
      case SyntaxKind.Identifier:
        return this.identifier(e, env);
      case SyntaxKind.ArrowFunction:
      case SyntaxKind.FunctionExpression:
        return new FnVal(e, env);
      default:
        break;
    }
    if (TsNode.isTemplateExpression(e)) {
      let s = e.getHead().getLiteralText();
      for (const span of e.getTemplateSpans()) {
        const v = this.eval(span.getExpression(), env);
        if (v === POISON) return POISON;
        if (typeof v !== 'number' && typeof v !== 'string' && typeof v !== 'boolean') {
          return this.fail('MD1107', `a template literal can only embed numbers, strings and booleans, not ${kindOf(v)}`, span.getExpression());
        }
        s += String(v) + span.getLiteral().getLiteralText();
      }
      return s;
    }
    if (TsNode.isObjectLiteralExpression(e)) return this.object(e, env);
    if (TsNode.isArrayLiteralExpression(e)) {
      const items: Slot[] = [];
      for (const el of e.getElements()) {
        if (TsNode.isSpreadElement(el)) {
          const v = this.eval(el.getExpression(), env);
          if (v instanceof ArrVal) items.push(...v.items);
          else if (v !== POISON) this.fail('MD1107', `only an array can be spread into an array, not ${kindOf(v)}`, el);
        } else if (TsNode.isOmittedExpression(el)) {
          items.push({ value: undefined, node: el });
        } else items.push({ value: this.eval(el, env), node: el });
      }
      return new ArrVal(items);
    }
    if (TsNode.isPropertyAccessExpression(e)) {
      const base = this.eval(e.getExpression(), env);
      if (base === POISON) return POISON;
      if ((base === undefined || base === null) && e.hasQuestionDotToken()) return undefined;
      return this.member(base, e.getName(), e.getNameNode(), true);
    }
    if (TsNode.isElementAccessExpression(e)) {
      const base = this.eval(e.getExpression(), env);
      const arg = e.getArgumentExpression();
      const key = arg ? this.eval(arg, env) : POISON;
      if (base === POISON || key === POISON) return POISON;
      if ((base === undefined || base === null) && e.hasQuestionDotToken()) return undefined;
      if (typeof key !== 'string' && typeof key !== 'number') return this.fail('MD1107', `an index must be a string or a number, not ${kindOf(key)}`, arg ?? e);
      return this.member(base, String(key), arg ?? e, true);
    }
    if (TsNode.isCallExpression(e)) return this.call(e, env);
    if (TsNode.isPrefixUnaryExpression(e)) return this.prefix(e.getOperatorToken(), this.eval(e.getOperand(), env), e);
    if (TsNode.isBinaryExpression(e)) return this.binary(e, env);
    if (TsNode.isConditionalExpression(e)) {
      const c = this.eval(e.getCondition(), env);
      if (c === POISON) return POISON;
      return this.eval(truthy(c) ? e.getWhenTrue() : e.getWhenFalse(), env);
    }
    return this.fail(
      'MD1101',
      `${describe(e)} cannot be evaluated statically; the deploy value must be built from literals, object/array literals, consts, property access, arithmetic and calls of ordinary functions`,
      e,
    );
  }

  private object(e: TsNode & { getProperties(): TsNode[] }, env: Env): Value {
    const props = new Map<string, Slot>();
    for (const p of e.getProperties()) {
      if (TsNode.isPropertyAssignment(p)) {
        const nameNode = p.getNameNode();
        const key = TsNode.isComputedPropertyName(nameNode) ? this.eval(nameNode.getExpression(), env) : propertyKey(nameNode);
        const init = p.getInitializer();
        const value = init ? this.eval(init, env) : POISON;
        if (key === POISON) continue;
        if (typeof key !== 'string' && typeof key !== 'number') {
          this.fail('MD1107', `a computed property name must be a string or a number, not ${kindOf(key)}`, nameNode);
          continue;
        }
        props.delete(String(key));
        props.set(String(key), { value, node: init ?? p });
      } else if (TsNode.isShorthandPropertyAssignment(p)) {
        props.delete(p.getName());
        props.set(p.getName(), { value: this.identifier(p.getNameNode(), env), node: p.getNameNode() });
      } else if (TsNode.isSpreadAssignment(p)) {
        const v = this.eval(p.getExpression(), env);
        const src = v instanceof DescriptorVal ? v.def : v;
        if (src instanceof ObjVal) {
          for (const [k, s] of src.props) {
            props.delete(k);
            props.set(k, s);
          }
        } else if (v !== undefined && v !== null && v !== POISON) {
          this.fail('MD1107', `only an object can be spread into an object, not ${kindOf(v)}`, p);
        }
      } else if (TsNode.isMethodDeclaration(p)) {
        props.delete(p.getName());
        props.set(p.getName(), { value: new FnVal(p, env), node: p });
      } else {
        this.fail('MD1101', `${describe(p)} in an object literal cannot be evaluated statically; use 'name: value'`, p);
      }
    }
    return new ObjVal(props);
  }

  /** `base.key` / `base[key]`. With `strict`, a missing member of a non-object is an error. */
  member(base: Value, key: string, at: TsNode, strict: boolean): Value {
    if (base === POISON) return POISON;
    if (base instanceof ObjVal) return base.props.get(key)?.value;
    if (base instanceof DescriptorVal) return key === 'kind' ? base.kind : base.def.props.get(key)?.value;
    if (base instanceof ArrVal) {
      if (key === 'length') return base.items.length;
      if (/^(0|[1-9][0-9]*)$/.test(key)) return base.items[Number(key)]?.value;
    }
    if (typeof base === 'string' && key === 'length') return base.length;
    if (base instanceof ModuleVal) {
      let sym = base.file.getExportSymbols().find((x) => x.getName() === key);
      if (sym?.isAlias()) sym = sym.getAliasedSymbol() ?? sym;
      const decl = sym?.getValueDeclaration() ?? sym?.getDeclarations()[0];
      if (!decl) return this.fail('MD1103', `${kindOf(base)} has no export '${key}'`, at);
      return this.declValue(decl, at, new Env());
    }
    if (base instanceof MathNamespace) {
      if (key in MATH_CONSTANTS) return MATH_CONSTANTS[key]!;
      if (key in MATH_INTRINSICS) return new MathFnVal(key);
      return this.fail('MD1103', `Math.${key} is not available; use one of ${[...Object.keys(MATH_INTRINSICS), ...Object.keys(MATH_CONSTANTS)].map((k) => `Math.${k}`).join(', ')}`, at);
    }
    if (!strict) return undefined;
    return this.fail('MD1103', `cannot read '${key}' of ${kindOf(base)}`, at);
  }

  private call(e: CallExpression, env: Env): Value {
    const callee = this.eval(e.getExpression(), env);
    const args: Slot[] = [];
    for (const a of e.getArguments()) {
      if (TsNode.isSpreadElement(a)) {
        const v = this.eval(a.getExpression(), env);
        if (v instanceof ArrVal) args.push(...v.items);
        else {
          if (v !== POISON) this.fail('MD1107', `only an array can be spread into arguments, not ${kindOf(v)}`, a);
          args.push({ value: POISON, node: a });
        }
      } else args.push({ value: this.eval(a, env), node: a });
    }
    if (callee === POISON) return POISON;
    if (callee instanceof MathFnVal) {
      const { arity } = MATH_INTRINSICS[callee.name]!;
      if (args.length !== arity) return this.fail('MD1104', `Math.${callee.name} takes ${arity} argument${arity === 1 ? '' : 's'}, got ${args.length}`, e);
      if (args.some((a) => a.value === POISON)) return POISON;
      const bad = args.find((a) => typeof a.value !== 'number');
      if (bad) return this.fail('MD1107', `Math.${callee.name} needs numbers, not ${kindOf(bad.value)}`, bad.node);
      return (Math[callee.name as 'min'] as (...xs: number[]) => number)(...args.map((a) => a.value as number));
    }
    if (this.callStack.length >= MAX_CALL_DEPTH) return this.fail('MD1106', `calls nested more than ${MAX_CALL_DEPTH} deep (unbounded recursion?)`, e);
    this.callStack.push(e);
    try {
      if (callee instanceof PrimitiveVal) return this.ctx.callPrimitive(callee.name, args, e);
      if (callee instanceof FnVal) return this.apply(callee, args, e);
    } finally {
      this.callStack.pop();
    }
    return this.fail('MD1104', `${kindOf(callee)} cannot be called; only functions written in TypeScript (arrow functions, function declarations) and the DSL primitives can be evaluated`, e.getExpression());
  }

  /** Call an ordinary function: bind parameters to arguments and evaluate the body. */
  apply(fn: FnVal, args: readonly Slot[], call: TsNode): Value {
    const decl = fn.decl as TsNode & {
      getParameters(): (TsNode & { getNameNode(): TsNode; getInitializer(): TsNode | undefined; isRestParameter(): boolean })[];
      getBody(): TsNode | undefined;
    };
    const env = new Env(fn.env);
    decl.getParameters().forEach((p, i) => {
      if (p.isRestParameter()) {
        this.fail('MD1105', 'rest parameters are not supported in evaluated functions; name each parameter', p);
        env.bind(p, { value: POISON, node: p });
        return;
      }
      let slot: Slot = args[i] ?? { value: undefined, node: call };
      const dflt = p.getInitializer();
      if (slot.value === undefined && dflt) slot = { value: this.eval(dflt, env), node: dflt };
      this.bindName(p.getNameNode(), slot, env, p);
    });
    const body = decl.getBody();
    if (!body) return this.fail('MD1105', 'this function has no body to evaluate', decl);
    if (!TsNode.isBlock(body)) return this.eval(body, env);
    const r = this.block(body.getStatements(), env);
    return r.returned ? r.value : undefined;
  }

  /** Execute a function body's statements: consts, if/else and return. */
  private block(stmts: readonly TsNode[], env: Env): { returned: boolean; value: Value } {
    for (const s of stmts) if (TsNode.isFunctionDeclaration(s)) env.bind(s, { value: new FnVal(s, env), node: s });
    for (const s of stmts) {
      if (TsNode.isFunctionDeclaration(s) || TsNode.isEmptyStatement(s)) continue;
      if (TsNode.isVariableStatement(s)) {
        if (s.getDeclarationKind() !== 'const') {
          this.fail('MD1105', `'${s.getDeclarationKind()}' is not supported in evaluated functions; use 'const'`, s.getDeclarationKindKeywords()[0] ?? s);
          return { returned: true, value: POISON };
        }
        for (const d of s.getDeclarations()) {
          const init = d.getInitializer();
          this.bindName(d.getNameNode(), { value: init ? this.eval(init, env) : POISON, node: init ?? d }, env, d);
        }
        continue;
      }
      if (TsNode.isReturnStatement(s)) {
        const x = s.getExpression();
        return { returned: true, value: x ? this.eval(x, env) : undefined };
      }
      if (TsNode.isIfStatement(s)) {
        const c = this.eval(s.getExpression(), env);
        if (c === POISON) return { returned: true, value: POISON };
        const branch = truthy(c) ? s.getThenStatement() : s.getElseStatement();
        if (!branch) continue;
        const r = this.block(TsNode.isBlock(branch) ? branch.getStatements() : [branch], new Env(env));
        if (r.returned) return r;
        continue;
      }
      if (TsNode.isBlock(s)) {
        const r = this.block(s.getStatements(), new Env(env));
        if (r.returned) return r;
        continue;
      }
      this.fail('MD1105', `${describe(s)} is not supported in evaluated functions; only 'const' declarations, 'if' and 'return' are`, s);
      return { returned: true, value: POISON };
    }
    return { returned: false, value: undefined };
  }

  private prefix(op: SyntaxKind, v: Value, e: TsNode): Value {
    if (v === POISON) return POISON;
    if (op === SyntaxKind.ExclamationToken) return !truthy(v);
    if (typeof v !== 'number') return this.fail('MD1107', `'${e.getText().trim()[0]}' needs a number, not ${kindOf(v)}`, e);
    if (op === SyntaxKind.MinusToken) return -v;
    if (op === SyntaxKind.PlusToken) return v;
    return this.fail('MD1107', `the operator in '${e.getText()}' is not supported; use -, + or !`, e);
  }

  private binary(e: TsNode & { getLeft(): TsNode; getRight(): TsNode; getOperatorToken(): TsNode }, env: Env): Value {
    const op = e.getOperatorToken().getKind();
    const l = this.eval(e.getLeft(), env);
    if (l === POISON) return POISON;
    if (op === SyntaxKind.AmpersandAmpersandToken) return truthy(l) ? this.eval(e.getRight(), env) : l;
    if (op === SyntaxKind.BarBarToken) return truthy(l) ? l : this.eval(e.getRight(), env);
    if (op === SyntaxKind.QuestionQuestionToken) return l === undefined || l === null ? this.eval(e.getRight(), env) : l;
    const r = this.eval(e.getRight(), env);
    if (r === POISON) return POISON;
    const prim = (v: Value): v is number | string | boolean => typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean';
    if (op === SyntaxKind.EqualsEqualsEqualsToken || op === SyntaxKind.ExclamationEqualsEqualsToken || op === SyntaxKind.EqualsEqualsToken || op === SyntaxKind.ExclamationEqualsToken) {
      if (!(prim(l) || l == null) || !(prim(r) || r == null)) return this.fail('MD1107', `only numbers, strings, booleans, null and undefined can be compared, not ${kindOf(l)} and ${kindOf(r)}`, e);
      const same = op === SyntaxKind.EqualsEqualsEqualsToken || op === SyntaxKind.ExclamationEqualsEqualsToken ? l === r : l == r;
      return op === SyntaxKind.EqualsEqualsEqualsToken || op === SyntaxKind.EqualsEqualsToken ? same : !same;
    }
    if (op === SyntaxKind.PlusToken && (typeof l === 'string' || typeof r === 'string') && prim(l) && prim(r)) return String(l) + String(r);
    const opText = e.getOperatorToken().getText();
    const stringCompare = typeof l === 'string' && typeof r === 'string';
    if ((typeof l !== 'number' || typeof r !== 'number') && !(stringCompare && /^[<>]=?$/.test(opText))) {
      return this.fail('MD1107', `'${opText}' needs numbers, not ${kindOf(l)} and ${kindOf(r)}`, e);
    }
    const a = l as number;
    const b = r as number;
    switch (op) {
      case SyntaxKind.PlusToken:
        return a + b;
      case SyntaxKind.MinusToken:
        return a - b;
      case SyntaxKind.AsteriskToken:
        return a * b;
      case SyntaxKind.SlashToken:
        return a / b;
      case SyntaxKind.PercentToken:
        return a % b;
      case SyntaxKind.AsteriskAsteriskToken:
        return a ** b;
      case SyntaxKind.LessThanToken:
        return a < b;
      case SyntaxKind.LessThanEqualsToken:
        return a <= b;
      case SyntaxKind.GreaterThanToken:
        return a > b;
      case SyntaxKind.GreaterThanEqualsToken:
        return a >= b;
      default:
        return this.fail('MD1107', `the operator '${opText}' is not supported in static evaluation; use arithmetic (+ - * / % **), comparisons, &&, || or ??`, e.getOperatorToken());
    }
  }
}

function globalValue(name: GlobalName, _at: TsNode): Value {
  switch (name) {
    case 'Infinity':
      return Infinity;
    case 'NaN':
      return NaN;
    case 'undefined':
      return undefined;
    case 'Math':
      return MATH;
  }
}

function truthy(v: Value): boolean {
  return v instanceof Object ? true : Boolean(v);
}

/** The key of a non-computed property name (identifier, string or numeric literal). */
function propertyKey(n: TsNode): string {
  if (TsNode.isStringLiteral(n) || TsNode.isNoSubstitutionTemplateLiteral(n)) return n.getLiteralValue();
  if (TsNode.isNumericLiteral(n)) return String(n.getLiteralValue());
  return n.getText();
}

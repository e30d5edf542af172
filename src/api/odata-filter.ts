// The OData `filter` of the Web PubSub REST API (spec §6.6): sendToAll/sendToGroup/sendToUser
// (query `filter`) and :addToGroups/:removeFromGroups (body `filter`) select connections with it.
// A filter is tokenized, parsed by recursive descent, type-checked and compiled into closures once;
// `matches` then runs per connection with no parsing. Pure: no I/O, no packages.
//
// Grammar (precedence high → low; `not` binds to the next unary, so `not length(userId) gt 5` is
// `(not length(userId)) gt 5`, a type error, as on Azure):
//   or      := and ('or' and)*
//   and     := compare ('and' compare)*
//   compare := unary (('eq'|'ne'|'gt'|'ge'|'lt'|'le') unary | 'in' (list | unary))*
//   unary   := 'not' unary | primary
//   primary := literal | identifier | function '(' args ')' | '(' or ')'
//   list    := '(' literal (',' literal)* ')'
// Identifiers and function names are case-insensitive (Azure documents this for identifiers).
// Keywords (`and or not eq ne gt ge lt le in`) and `true`/`false`/`null` are lowercase only, as
// in OData's grammar; `AND` or `True` is rejected with a message saying so, not accepted, so a
// filter that works here also parses on Azure.
//
// Evaluation follows OData: string functions over a null argument give null; `eq`/`ne` compare
// null as a value (`userId eq null`); the other comparisons, and `in`, are false when an operand is
// null (`userId gt null` compiles and is always false); and/or/not use three-valued logic and a
// filter that ends up null does not match.
// Strings compare ordinally (UTF-16 code units, as .NET's ordinal comparison); `length` and
// `indexof` count UTF-16 code units. `substring(s, i[, n])` clamps instead of failing: `i` is
// clamped into [0, length(s)], `n` (when given) to at least 0, and the result ends at length(s) at
// the latest, so `substring('abc', 5)` is '' and `substring('abc', -1, 2)` is 'ab'.

/** The connection a filter is evaluated against. */
export interface FilterSubject {
  userId: string | null;
  connectionId: string;
  /** The groups it is in (read, never copied: a filter over many sessions allocates nothing per session). */
  groups: GroupSet;
}

/** What a filter needs of a connection's groups. */
export interface GroupSet {
  has(group: string): boolean;
  readonly size: number;
}

/** A filter that cannot be compiled; the REST API answers it with 400 `InvalidFilter`. */
export class FilterError extends Error {
  /** Offset (0-based, UTF-16 code units) in the filter text of what is wrong, when there is one. */
  readonly position: number | undefined;

  constructor(message: string, position?: number) {
    super(message);
    this.name = 'FilterError';
    this.position = position;
  }
}

export interface CompiledFilter {
  matches(subject: FilterSubject): boolean;
  /** Comparisons, `in` tests and boolean function calls in the filter. */
  readonly clauses: number;
}

export interface CompileFilterOptions {
  /** Most clauses (comparisons, `in`, contains/startswith/endswith) a filter may have; default 100. */
  maxClauses?: number;
  /** Longest filter text, in UTF-16 code units; default 4096. */
  maxLength?: number;
}

export const DEFAULT_MAX_CLAUSES = 100;
export const DEFAULT_MAX_LENGTH = 4096;
/** Most nested levels of parentheses, function calls and `not`: keeps recursion far from the stack limit. */
export const MAX_FILTER_DEPTH = 64;

type Type = 'string' | 'int' | 'bool' | 'null' | 'collection';
type Value = string | number | boolean | null | GroupSet;
type Eval = (subject: FilterSubject) => Value;

/** A parsed, type-checked sub-expression: its static type, where it is in the text, and its closure. */
interface Node {
  type: Type;
  start: number;
  end: number;
  ev: Eval;
  /** Set for literals only (the items of an `in` list must be literals). */
  literal?: { value: string | number | boolean | null };
}

type TokenKind = 'word' | 'string' | 'int' | '(' | ')' | ',' | 'eof';

interface Token {
  kind: TokenKind;
  /** The token as written. */
  text: string;
  /** word: lower-cased text; string: the unescaped value; int: the number. */
  value: string | number;
  start: number;
  end: number;
}

const COMPARISONS = new Set(['eq', 'ne', 'gt', 'ge', 'lt', 'le']);
const KEYWORDS = new Set(['and', 'or', 'not', 'in', ...COMPARISONS]);
/** Words that must be written in lower case. */
const LOWERCASE_ONLY = new Set([...KEYWORDS, 'true', 'false', 'null']);
// Maps, not object literals: a word such as `constructor` must not find Object.prototype members.
const IDENTIFIERS: ReadonlyMap<string, { type: Type; ev: Eval }> = new Map([
  ['userid', { type: 'string', ev: (s) => s.userId }],
  ['connectionid', { type: 'string', ev: (s) => s.connectionId }],
  ['groups', { type: 'collection', ev: (s) => s.groups }],
]);

interface FunctionSpec {
  /** Accepted types per parameter; parameters past `required` are optional. */
  params: readonly (readonly Type[])[];
  required: number;
  result: Type;
  /** Called with non-null arguments only (a null argument makes the result null). */
  apply: (args: readonly Value[]) => Value;
}

const STR: readonly Type[] = ['string'];
const INT: readonly Type[] = ['int'];
const str = (v: Value | undefined): string => v as string;
const int = (v: Value | undefined): number => v as number;

const FUNCTIONS: ReadonlyMap<string, FunctionSpec> = new Map(Object.entries({
  length: { params: [['string', 'collection']], required: 1, result: 'int', apply: ([a]) => (typeof a === 'string' ? a.length : (a as GroupSet).size) },
  tolower: { params: [STR], required: 1, result: 'string', apply: ([a]) => str(a).toLowerCase() },
  toupper: { params: [STR], required: 1, result: 'string', apply: ([a]) => str(a).toUpperCase() },
  trim: { params: [STR], required: 1, result: 'string', apply: ([a]) => str(a).trim() },
  substring: { params: [STR, INT, INT], required: 2, result: 'string', apply: (args) => substring(str(args[0]), int(args[1]), args.length > 2 ? int(args[2]) : undefined) },
  indexof: { params: [STR, STR], required: 2, result: 'int', apply: ([a, b]) => str(a).indexOf(str(b)) },
  concat: { params: [STR, STR], required: 2, result: 'string', apply: ([a, b]) => str(a) + str(b) },
  contains: { params: [STR, STR], required: 2, result: 'bool', apply: ([a, b]) => str(a).includes(str(b)) },
  startswith: { params: [STR, STR], required: 2, result: 'bool', apply: ([a, b]) => str(a).startsWith(str(b)) },
  endswith: { params: [STR, STR], required: 2, result: 'bool', apply: ([a, b]) => str(a).endsWith(str(b)) },
} satisfies Record<string, FunctionSpec>));

/** OData substring, clamped rather than failing on out-of-range positions (see the header). */
function substring(s: string, start: number, length: number | undefined): string {
  const from = Math.min(Math.max(start, 0), s.length);
  const to = length === undefined ? s.length : Math.min(from + Math.max(length, 0), s.length);
  return s.slice(from, to);
}

/** Compiles `text` once; throws FilterError for anything that is not a valid boolean filter. */
export function compileFilter(text: string, opts: CompileFilterOptions = {}): CompiledFilter {
  const maxLength = opts.maxLength ?? DEFAULT_MAX_LENGTH;
  if (text.length > maxLength) {
    throw new FilterError(`Filter is ${text.length} characters long; the limit is ${maxLength}`);
  }
  const parser = new Parser(text, tokenize(text), opts.maxClauses ?? DEFAULT_MAX_CLAUSES);
  const ev = parser.parseFilter();
  return { matches: (subject) => ev(subject) === true, clauses: parser.clauses };
}

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      i++;
    } else if (c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: c, text: c, value: c, start: i, end: i + 1 });
      i++;
    } else if (c === "'") {
      const start = i;
      let value = '';
      for (i++; ; i++) {
        if (i >= text.length) throw new FilterError(`Unterminated string literal starting at position ${start}`, start);
        if (text[i] === "'") {
          if (text[i + 1] !== "'") break;
          i++; // '' is an escaped quote
        }
        value += text[i];
      }
      i++;
      tokens.push({ kind: 'string', text: text.slice(start, i), value, start, end: i });
    } else if (isDigit(c) || ((c === '-' || c === '+') && isDigit(text[i + 1]))) {
      const start = i;
      for (i++; isDigit(text[i]); i++);
      const raw = text.slice(start, i);
      const value = Number(raw);
      if (!Number.isSafeInteger(value)) throw new FilterError(`Integer literal '${raw}' at position ${start} is out of range`, start);
      tokens.push({ kind: 'int', text: raw, value: value === 0 ? 0 : value, start, end: i });
    } else if (isWordStart(c)) {
      const start = i;
      for (i++; i < text.length && (isWordStart(text[i]!) || isDigit(text[i])); i++);
      const raw = text.slice(start, i);
      const lower = raw.toLowerCase();
      if (raw !== lower && LOWERCASE_ONLY.has(lower)) {
        throw new FilterError(`'${raw}' at position ${start}: keywords and true/false/null are lowercase in OData; write '${lower}'`, start);
      }
      tokens.push({ kind: 'word', text: raw, value: lower, start, end: i });
    } else {
      throw new FilterError(`Unexpected character '${c}' at position ${i}`, i);
    }
  }
  tokens.push({ kind: 'eof', text: '', value: '', start: text.length, end: text.length });
  return tokens;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function isWordStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_';
}

/** A token as an error message shows it. */
function describe(token: Token): string {
  if (token.kind === 'eof') return 'end of filter';
  return `'${clip(token.text)}'`;
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function expectList(types: readonly Type[]): string {
  const quoted = types.map((t) => `'${t}'`);
  return quoted.length === 1 ? quoted[0]! : `${quoted.slice(0, -1).join(', ')} or ${quoted[quoted.length - 1]!}`;
}

class Parser {
  readonly #text: string;
  readonly #tokens: Token[];
  readonly #maxClauses: number;
  #pos = 0;
  #depth = 0;
  clauses = 0;

  constructor(text: string, tokens: Token[], maxClauses: number) {
    this.#text = text;
    this.#tokens = tokens;
    this.#maxClauses = maxClauses;
  }

  parseFilter(): Eval {
    const first = this.#peek();
    if (first.kind === 'eof') throw new FilterError('Filter is empty', 0);
    const node = this.#parseOr();
    const rest = this.#peek();
    if (rest.kind !== 'eof') {
      throw new FilterError(`Unexpected ${describe(rest)} at position ${rest.start}: expected 'and', 'or' or the end of the filter`, rest.start);
    }
    this.#expectType(node, node, ['bool']);
    return node.ev;
  }

  #peek(): Token {
    return this.#tokens[this.#pos]!;
  }

  #next(): Token {
    const token = this.#tokens[this.#pos]!;
    if (token.kind !== 'eof') this.#pos++;
    return token;
  }

  #isWord(token: Token, word: string): boolean {
    return token.kind === 'word' && token.value === word;
  }

  #expect(kind: TokenKind, what: string): Token {
    const token = this.#peek();
    if (token.kind !== kind) throw new FilterError(`Expected ${what} at position ${token.start}, found ${describe(token)}`, token.start);
    return this.#next();
  }

  #enter(at: Token): void {
    if (++this.#depth > MAX_FILTER_DEPTH) {
      throw new FilterError(`Filter is nested too deeply at position ${at.start}: more than ${MAX_FILTER_DEPTH} levels of parentheses, function calls and 'not'`, at.start);
    }
  }

  #countClause(at: Node): void {
    if (++this.clauses > this.#maxClauses) {
      throw new FilterError(`Filter has too many clauses: the limit is ${this.#maxClauses} (clause ${this.clauses} at position ${at.start})`, at.start);
    }
  }

  /** Throws the Azure-style type error unless `node` has one of `types`; `context` names the construct. */
  #expectType(context: { start: number; end: number }, node: Node, types: readonly Type[], suffix = ''): void {
    if (types.includes(node.type)) return;
    throw new FilterError(`Invalid syntax for '${clip(this.#text.slice(context.start, context.end))}': Type '${node.type}', expect ${expectList(types)}${suffix}`, context.start);
  }

  #parseOr(): Node {
    return this.#parseLogical('or', () => this.#parseAnd());
  }

  #parseAnd(): Node {
    return this.#parseLogical('and', () => this.#parseCompare());
  }

  /** A chain `a op b op c`, flattened into one closure with OData's three-valued logic. */
  #parseLogical(op: 'and' | 'or', operand: () => Node): Node {
    const first = operand();
    if (!this.#isWord(this.#peek(), op)) return first;
    const evs: Eval[] = [first.ev];
    let end = first.end;
    while (this.#isWord(this.#peek(), op)) {
      this.#next();
      const next = operand();
      end = next.end;
      const context = { start: first.start, end };
      if (evs.length === 1) this.#expectType(context, first, ['bool']);
      this.#expectType(context, next, ['bool']);
      evs.push(next.ev);
    }
    // and: false wins, then null; or: true wins, then null.
    const decisive = op === 'or';
    const ev: Eval = (s) => {
      let sawNull = false;
      for (const e of evs) {
        const v = e(s);
        if (v === decisive) return decisive;
        if (v === null) sawNull = true;
      }
      return sawNull ? null : !decisive;
    };
    return { type: 'bool', start: first.start, end, ev };
  }

  #parseCompare(): Node {
    let left = this.#parseUnary();
    for (;;) {
      const op = this.#peek();
      if (op.kind !== 'word') return left;
      if (COMPARISONS.has(op.value as string)) {
        this.#next();
        const right = this.#parseUnary();
        left = this.#comparison(op.value as string, left, right);
      } else if (op.value === 'in') {
        this.#next();
        left = this.#in(left);
      } else {
        return left;
      }
    }
  }

  #comparison(op: string, left: Node, right: Node): Node {
    const context = { start: left.start, end: right.end };
    // Strings compare with strings, ints with ints, bools (eq/ne only) with bools, and each with
    // null. `null eq null` is allowed; `null gt null` is not (it could only ever be false).
    const ordered = op !== 'eq' && op !== 'ne';
    this.#expectType(context, left, ordered ? ['string', 'int', 'null'] : ['string', 'int', 'bool', 'null']);
    if (left.type === 'null') {
      this.#expectType(context, right, ordered ? ['string', 'int'] : ['string', 'int', 'bool', 'null']);
    } else if (right.type !== left.type) {
      this.#expectType(context, right, [left.type, 'null']);
    }
    this.#countClause(left);
    const a = left.ev;
    const b = right.ev;
    let ev: Eval;
    switch (op) {
      case 'eq': ev = (s) => a(s) === b(s); break;
      case 'ne': ev = (s) => a(s) !== b(s); break;
      case 'gt': ev = ordinal(a, b, (x, y) => x > y); break;
      case 'ge': ev = ordinal(a, b, (x, y) => x >= y); break;
      case 'lt': ev = ordinal(a, b, (x, y) => x < y); break;
      default: ev = ordinal(a, b, (x, y) => x <= y); break;
    }
    return { type: 'bool', ...context, ev };
  }

  /** `x in ('a', 'b')` (literals of x's type) or `'g' in groups`. */
  #in(left: Node): Node {
    const open = this.#peek();
    if (open.kind !== '(') {
      const right = this.#parseUnary();
      const context = { start: left.start, end: right.end };
      this.#expectType(context, right, ['collection']);
      this.#expectType(context, left, ['string']);
      this.#countClause(left);
      const a = left.ev;
      const b = right.ev;
      return { type: 'bool', ...context, ev: (s) => { const v = a(s); return v !== null && (b(s) as GroupSet).has(v as string); } };
    }
    this.#next();
    const values = new Set<string | number>();
    const list: Node[] = [];
    for (;;) {
      const item = this.#parseUnary();
      if (item.literal === undefined) {
        throw new FilterError(`Expected a literal at position ${item.start} in the 'in' list, found '${clip(this.#text.slice(item.start, item.end))}'`, item.start);
      }
      if (item.literal.value === null) {
        throw new FilterError(`'null' in the 'in' list at position ${item.start} never matches; use 'eq null'`, item.start);
      }
      list.push(item);
      values.add(item.literal.value as string | number);
      const sep = this.#peek();
      if (sep.kind === ')') break;
      this.#expect(',', "',' or ')' in the 'in' list");
    }
    const close = this.#next();
    const context = { start: left.start, end: close.end };
    this.#expectType(context, left, ['string', 'int']);
    for (const item of list) this.#expectType(context, item, [left.type]);
    this.#countClause(left);
    const a = left.ev;
    return { type: 'bool', ...context, ev: (s) => { const v = a(s); return v !== null && values.has(v as string | number); } };
  }

  #parseUnary(): Node {
    const token = this.#peek();
    if (!this.#isWord(token, 'not')) return this.#parsePrimary();
    this.#next();
    this.#enter(token);
    const operand = this.#parseUnary();
    this.#depth--;
    const context = { start: token.start, end: operand.end };
    this.#expectType(context, operand, ['bool']);
    const a = operand.ev;
    return { type: 'bool', ...context, ev: (s) => { const v = a(s); return v === null ? null : !v; } };
  }

  #parsePrimary(): Node {
    const token = this.#next();
    const at = { start: token.start, end: token.end };
    switch (token.kind) {
      case 'string':
      case 'int': {
        const value = token.value;
        return { type: token.kind, ...at, ev: () => value, literal: { value } };
      }
      case '(': {
        this.#enter(token);
        const inner = this.#parseOr();
        const close = this.#peek();
        if (close.kind !== ')') {
          throw new FilterError(`Expected ')' at position ${close.start} to close '(' at position ${token.start}, found ${describe(close)}`, close.start);
        }
        this.#next();
        this.#depth--;
        return { ...inner, start: token.start, end: close.end };
      }
      case 'word':
        return this.#word(token);
      default:
        throw new FilterError(`Unexpected ${describe(token)} at position ${token.start}: expected a value`, token.start);
    }
  }

  #word(token: Token): Node {
    const at = { start: token.start, end: token.end };
    const word = token.value as string;
    if (word === 'true' || word === 'false' || word === 'null') {
      const value = word === 'null' ? null : word === 'true';
      return { type: value === null ? 'null' : 'bool', ...at, ev: () => value, literal: { value } };
    }
    const id = IDENTIFIERS.get(word);
    if (id !== undefined) return { type: id.type, ...at, ev: id.ev };
    const fn = FUNCTIONS.get(word);
    if (fn !== undefined) return this.#call(token, fn);
    if (KEYWORDS.has(word)) {
      throw new FilterError(`Unexpected '${token.text}' at position ${token.start}: expected a value`, token.start);
    }
    if (this.#peek().kind === '(') {
      throw new FilterError(`Unknown function '${clip(token.text)}' at position ${token.start}`, token.start);
    }
    throw new FilterError(`Unknown identifier '${clip(token.text)}' at position ${token.start}: expected userId, connectionId or groups`, token.start);
  }

  #call(name: Token, fn: FunctionSpec): Node {
    const open = this.#peek();
    if (open.kind !== '(') {
      throw new FilterError(`Expected '(' after function '${name.text}' at position ${open.start}, found ${describe(open)}`, open.start);
    }
    this.#next();
    this.#enter(name);
    const args: Node[] = [];
    if (this.#peek().kind !== ')') {
      for (;;) {
        args.push(this.#parseOr());
        if (this.#peek().kind !== ',') break;
        this.#next();
      }
    }
    const close = this.#expect(')', `',' or ')' in the arguments of '${name.text}'`);
    this.#depth--;
    const context = { start: name.start, end: close.end };
    const max = fn.params.length;
    if (args.length < fn.required || args.length > max) {
      const arity = fn.required === max ? `${max}` : `${fn.required} or ${max}`;
      throw new FilterError(`Function '${name.text}' at position ${name.start} takes ${arity} argument${max === 1 ? '' : 's'}, got ${args.length}`, name.start);
    }
    args.forEach((arg, i) => this.#expectType(context, arg, fn.params[i]!, ` (argument ${i + 1} of '${name.text}')`));
    const node: Node = { type: fn.result, ...context, ev: callEval(fn, args.map((a) => a.ev)) };
    if (fn.result === 'bool') this.#countClause(node);
    return node;
  }
}

function callEval(fn: FunctionSpec, evs: readonly Eval[]): Eval {
  return (s) => {
    const values = evs.map((e) => e(s));
    return values.includes(null) ? null : fn.apply(values);
  };
}

/** gt/ge/lt/le: false when either side is null; strings compare by UTF-16 code unit (ordinal). */
function ordinal(a: Eval, b: Eval, cmp: (x: string | number, y: string | number) => boolean): Eval {
  return (s) => {
    const x = a(s);
    const y = b(s);
    return x !== null && y !== null && cmp(x as string | number, y as string | number);
  };
}

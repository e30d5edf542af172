// Web PubSub roles as rights (spec §3.3). Pure and synchronous: the broker asks on every PUBLISH
// and SUBSCRIBE, so patterns are compiled once and a check never allocates.
//
// Role forms:
//   webpubsub.sendToGroup / webpubsub.joinLeaveGroup                 any group
//   webpubsub.sendToGroup.{g} / webpubsub.joinLeaveGroup.{g}         exactly g; everything after the
//                                                                   prefix's dot is g (dots and slashes included)
//   webpubsub.sendToGroups.{p} / webpubsub.joinLeaveGroups.{p}       groups matching the pattern p
// Pattern syntax: `?` one character other than '.', `*` zero or more characters other than '.',
// `**` zero or more characters of any kind, `\` escapes `\`, `*` and `?`; any other character,
// '.' included, is literal. Decisions where the documentation is silent:
//   - `\` before any other character is a literal backslash followed by that character (the
//     documentation lists only three escapable characters, so `a\b` keeps its backslash);
//   - a trailing lone `\` makes the pattern malformed;
//   - the limit of 5 counts unescaped `*` characters (so `**` counts 2, `\*` counts 0);
//   - an empty group or pattern (`webpubsub.sendToGroup.`) is malformed: no group is empty;
//   - role names and groups are case-sensitive.
// Unknown role strings are ignored rather than rejected: an upstream may give them meaning.
// Characters are code points, so `?` matches one astral character, not half of it.
//
// MQTT mapping (spec §3.4): the group of an MQTT action is its topic string, and only '.' is a
// hierarchy separator for patterns ('/' is an ordinary character, so `*` crosses MQTT levels).
//   PUBLISH to topic T          needs allows('sendToGroup', T)
//   SUBSCRIBE to filter F       needs allows('joinLeaveGroup', F), F being the filter as written:
//                               `a/+` needs a role that covers the string `a/+` itself, such as
//                               webpubsub.joinLeaveGroup.a/+, webpubsub.joinLeaveGroups.** or
//                               webpubsub.joinLeaveGroup (a role for `a/b` does not grant `a/+`)
//   SUBSCRIBE `$share/{s}/{F}`  the caller passes the inner filter F, not the `$share/...` string

export type Right = 'sendToGroup' | 'joinLeaveGroup';

/** Most unescaped `*` characters a pattern may have (spec §3.3; `**` counts 2). */
const MAX_STARS = 5;

const RIGHTS: readonly Right[] = ['sendToGroup', 'joinLeaveGroup'];

const DOT = 0x2e;
const STAR = 0x2a;
const QUESTION = 0x3f;
const BACKSLASH = 0x5c;

/** Token kinds (plain numbers rather than an enum: the matcher's switch stays a small-int switch). */
const Kind = { Literal: 0, One: 1, Star: 2, GlobStar: 3 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];
/** One pattern token: a literal code point, or a wildcard. */
interface Token { kind: Kind; codePoint: number }

/** What a role string means: 'unknown' (not a group role), 'malformed', or the grant. */
type ParsedRole =
  | 'unknown'
  | 'malformed'
  | { right: Right; kind: 'any' }
  | { right: Right; kind: 'group'; group: string }
  | { right: Right; kind: 'pattern'; tokens: Token[]; literalPrefix: string };

/**
 * Pattern → tokens, or undefined if malformed. Adjacent stars merge (a `**` among them makes the
 * run a `**`): same language, and fewer states for the matcher.
 */
function tokenize(pattern: string): { tokens: Token[]; literalPrefix: string } | undefined {
  if (pattern.length === 0) return undefined;
  const tokens: Token[] = [];
  let stars = 0;
  let i = 0;
  while (i < pattern.length) {
    const cp = pattern.codePointAt(i)!;
    const width = cp > 0xffff ? 2 : 1;
    if (cp === BACKSLASH) {
      if (i + 1 >= pattern.length) return undefined; // trailing lone '\'
      const next = pattern.codePointAt(i + 1)!;
      if (next === BACKSLASH || next === STAR || next === QUESTION) {
        tokens.push({ kind: Kind.Literal, codePoint: next });
        i += 2;
      } else {
        tokens.push({ kind: Kind.Literal, codePoint: BACKSLASH }); // the next character is read on its own
        i += 1;
      }
      continue;
    }
    if (cp === STAR) {
      const isGlobStar = pattern.charCodeAt(i + 1) === STAR;
      const width2 = isGlobStar ? 2 : 1;
      stars += width2;
      if (stars > MAX_STARS) return undefined;
      const kind = isGlobStar ? Kind.GlobStar : Kind.Star;
      const last = tokens[tokens.length - 1];
      if (last !== undefined && (last.kind === Kind.Star || last.kind === Kind.GlobStar)) {
        if (kind === Kind.GlobStar) last.kind = Kind.GlobStar;
      } else {
        tokens.push({ kind, codePoint: 0 });
      }
      i += width2;
      continue;
    }
    tokens.push({ kind: cp === QUESTION ? Kind.One : Kind.Literal, codePoint: cp });
    i += width;
  }
  let literalPrefix = '';
  for (const t of tokens) {
    if (t.kind !== Kind.Literal) break;
    literalPrefix += String.fromCodePoint(t.codePoint);
  }
  return { tokens, literalPrefix };
}

function parseRole(role: string): ParsedRole {
  if (!role.startsWith('webpubsub.')) return 'unknown';
  const rest = role.slice('webpubsub.'.length);
  for (const right of RIGHTS) {
    if (rest === right) return { right, kind: 'any' };
    if (rest.startsWith(`${right}.`)) {
      const group = rest.slice(right.length + 1);
      return group.length === 0 ? 'malformed' : { right, kind: 'group', group };
    }
    if (rest === `${right}s`) return 'malformed'; // a pattern role without its pattern
    if (rest.startsWith(`${right}s.`)) {
      const compiled = tokenize(rest.slice(right.length + 2));
      return compiled === undefined ? 'malformed' : { right, kind: 'pattern', ...compiled };
    }
  }
  return 'unknown';
}

/**
 * False for a group role that is malformed: a pattern with more than 5 `*` or a trailing lone
 * `\`, an empty group or pattern. Other strings (`webpubsub.foo`, `admin`) are not group roles
 * and count as valid: a RoleSet ignores them, and an upstream may give them meaning.
 */
export function isValidRole(role: string): boolean {
  return parseRole(role) !== 'malformed';
}

/**
 * A compiled glob. Matching simulates the pattern's NFA over the input, one set of live states
 * per input character: O(input × tokens) time with no backtracking, whatever the pattern
 * (a backtracking RegExp such as /^[^.]*a[^.]*a[^.]*b$/ is polynomial of high degree on a miss).
 * The two state buffers are reused across calls: matching is synchronous, so calls never overlap.
 */
class GlobMatcher {
  readonly #tokens: Token[];
  readonly #literalPrefix: string;
  #live: Uint8Array;
  #next: Uint8Array;

  constructor(tokens: Token[], literalPrefix: string) {
    this.#tokens = tokens;
    this.#literalPrefix = literalPrefix;
    this.#live = new Uint8Array(tokens.length + 1);
    this.#next = new Uint8Array(tokens.length + 1);
  }

  matches(input: string): boolean {
    if (!input.startsWith(this.#literalPrefix)) return false; // cheap reject for the common `prefix.*` shape
    const tokens = this.#tokens;
    const n = tokens.length;
    let live = this.#live;
    let next = this.#next;
    live.fill(0);
    live[0] = 1;
    this.#close(live);
    let i = 0;
    while (i < input.length) {
      const cp = input.codePointAt(i)!;
      i += cp > 0xffff ? 2 : 1;
      next.fill(0);
      let any = false;
      for (let s = 0; s < n; s++) {
        if (live[s] === 0) continue;
        const t = tokens[s]!;
        switch (t.kind) {
          case Kind.Literal:
            if (cp === t.codePoint) { next[s + 1] = 1; any = true; }
            break;
          case Kind.One:
            if (cp !== DOT) { next[s + 1] = 1; any = true; }
            break;
          case Kind.Star:
            if (cp !== DOT) { next[s] = 1; any = true; }
            break;
          case Kind.GlobStar:
            next[s] = 1;
            any = true;
            break;
        }
      }
      if (!any) return false;
      this.#close(next);
      const swap = live;
      live = next;
      next = swap;
    }
    return live[n] === 1;
  }

  /** Epsilon closure: a star may match nothing, so the state after it is live too. */
  #close(states: Uint8Array): void {
    const tokens = this.#tokens;
    for (let s = 0; s < tokens.length; s++) {
      if (states[s] === 1) {
        const kind = tokens[s]!.kind;
        if (kind === Kind.Star || kind === Kind.GlobStar) states[s + 1] = 1;
      }
    }
  }
}

/** The rights one right-kind gets from a role set. */
class RightGrants {
  any = false;
  readonly groups = new Set<string>();
  readonly patterns: GlobMatcher[] = [];

  allows(group: string): boolean {
    if (this.any || this.groups.has(group)) return true;
    for (const p of this.patterns) if (p.matches(group)) return true;
    return false;
  }
}

/** A client's roles, compiled for the per-packet checks. */
export class RoleSet {
  static readonly empty: RoleSet = new RoleSet([]);

  /** The roles as given (unknown and malformed ones included), for the audit log. */
  readonly roles: readonly string[];
  readonly #grants: Record<Right, RightGrants> = { sendToGroup: new RightGrants(), joinLeaveGroup: new RightGrants() };

  constructor(roles: Iterable<string>) {
    this.roles = Object.freeze([...roles]);
    for (const role of this.roles) {
      const parsed = parseRole(role);
      if (parsed === 'unknown' || parsed === 'malformed') continue; // grants nothing
      const grants = this.#grants[parsed.right];
      switch (parsed.kind) {
        case 'any':
          grants.any = true;
          break;
        case 'group':
          grants.groups.add(parsed.group);
          break;
        case 'pattern':
          // a pattern without wildcards is an exact group: O(1) lookup instead of a scan
          if (parsed.tokens.every((t) => t.kind === Kind.Literal)) grants.groups.add(parsed.literalPrefix);
          else grants.patterns.push(new GlobMatcher(parsed.tokens, parsed.literalPrefix));
          break;
      }
    }
  }

  allows(right: Right, group: string): boolean {
    return this.#grants[right].allows(group);
  }
}

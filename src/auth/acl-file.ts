// mosquitto-style ACL file: parse once, then answer publish and subscribe checks. Pure and
// synchronous: reading the file and reloading it belong to the caller.
//
// Format (one directive a line; leading and trailing whitespace ignored; keywords case-sensitive):
//   # comment                               a line whose first non-blank character is '#'
//   topic [read|write|readwrite|deny] F     grant (default readwrite) or deny filter F
//   user NAME                               later `topic` lines belong to NAME (until the next `user`)
//   pattern [read|write|readwrite|deny] F   applies to every client, `%c` → client id, `%u` → user name
// `topic` lines before the first `user` line apply to clients without a user name. A filter is the
// rest of the line, so it may contain spaces (as in mosquitto); a trailing `# ...` is part of it, not
// a comment. Sections of the same user name given twice are merged.
//
// Decisions:
//   - write = PUBLISH to a topic name the filter matches; read = SUBSCRIBE to a filter F that the
//     entry's filter covers (every topic F can match, the entry's filter matches too: see filterCovers).
//   - deny wins over any grant. A deny entry denies PUBLISH to a topic it matches, and SUBSCRIBE to
//     any filter that could receive a topic it matches (filtersOverlap). Checks happen at SUBSCRIBE
//     time only (nothing is re-checked per delivered message, unlike mosquitto 2), so with grant
//     `a/#` and deny `a/b`, SUBSCRIBE `a/+` or `#` is refused: accepting it would deliver `a/b`.
//   - nothing listed for the client → denied.
//   - a pattern is skipped for a client whose substituted client id or user name contains '+', '#'
//     or '/' (one value must not widen the filter or span levels), and a `%u` pattern is skipped for
//     a client without a user name. An empty user name (`''`) counts as a user name, but no `user`
//     line can name it and `%u` never substitutes it: such a client gets patterns without `%u` only.
//   - an invalid filter (MQTT 5 §4.7.1) is a parse error, so a typo cannot silently grant nothing.
import { isValidTopicFilter, matchTopic } from '../mqtt/topic.ts';

export interface Acl {
  canPublish(username: string | undefined, clientId: string, topic: string): boolean;
  canSubscribe(username: string | undefined, clientId: string, filter: string): boolean;
}

/** A line of the ACL file that cannot be parsed; `line` is 1-based. */
export class AclParseError extends Error {
  readonly line: number;
  constructor(line: number, message: string) {
    super(`acl line ${line}: ${message}`);
    this.name = 'AclParseError';
    this.line = line;
  }
}

type Access = 'read' | 'write' | 'readwrite' | 'deny';
const ACCESSES: ReadonlySet<string> = new Set<Access>(['read', 'write', 'readwrite', 'deny']);

interface Entry {
  access: Access;
  filter: string;
}

interface PatternEntry extends Entry {
  usesClientId: boolean;
  usesUsername: boolean;
}

/** First whitespace-separated word and the rest of the line (leading blanks of the rest removed). */
function splitWord(text: string): [string, string] {
  const m = /^(\S+)\s*(.*)$/s.exec(text);
  return m === null ? ['', ''] : [m[1]!, m[2]!];
}

/** `[access] filter` → entry; throws AclParseError. */
function parseEntry(lineNo: number, keyword: string, rest: string): Entry {
  let access: Access = 'readwrite';
  let filter = rest;
  const [first, after] = splitWord(rest);
  if (ACCESSES.has(first)) {
    access = first as Access;
    filter = after;
  }
  if (filter.length === 0) throw new AclParseError(lineNo, `\`${keyword}\` without a topic filter`);
  if (!isValidTopicFilter(filter)) throw new AclParseError(lineNo, `invalid topic filter ${JSON.stringify(filter)}`);
  return { access, filter };
}

/**
 * True if every topic name `subscribeFilter` can match is matched by `aclFilter` (both valid
 * filters). `a/#` covers `a`, `a/b/+` and `a/#`; `a/+` covers `a/b` and `a/+`, not `a/#`; a
 * leading `#` or `+` covers no filter whose first level starts with '$' [MQTT-4.7.2-1].
 */
export function filterCovers(aclFilter: string, subscribeFilter: string): boolean {
  const acl = aclFilter.split('/');
  const sub = subscribeFilter.split('/');
  for (let i = 0; i < acl.length; i++) {
    const a = acl[i]!;
    // [MQTT-4.7.2-1] a wildcard in the first level does not match '$' topics
    const dollarGuard = i === 0 && sub[0]!.startsWith('$');
    if (a === '#') return !dollarGuard; // '#' also matches the parent level, so `a/#` covers `a`
    if (i >= sub.length) return false;
    const s = sub[i]!;
    if (s === '#') return false; // the subscription reaches levels a non-'#' level cannot cover
    if (a === '+') {
      if (dollarGuard) return false;
      continue; // covers a literal level and '+' alike
    }
    if (s !== a) return false; // a literal level covers only itself (not '+')
  }
  return acl.length === sub.length;
}

/**
 * True if some topic name matches both filters (both valid). '#' matches its parent level too
 * (`a/#` overlaps `a`); a leading wildcard never meets a '$' first level [MQTT-4.7.2-1].
 */
export function filtersOverlap(a: string, b: string): boolean {
  const fa = a.split('/');
  const fb = b.split('/');
  const isWild = (level: string): boolean => level === '+' || level === '#';
  if ((isWild(fa[0]!) && fb[0]!.startsWith('$')) || (isWild(fb[0]!) && fa[0]!.startsWith('$'))) return false;
  for (let i = 0; ; i++) {
    const la = fa[i];
    const lb = fb[i];
    if (la === '#' || lb === '#') return true;
    if (la === undefined || lb === undefined) return la === lb; // both ended: same depth
    if (la !== '+' && lb !== '+' && la !== lb) return false;
  }
}

/** A pattern's filter for this client, or undefined if the pattern does not apply to it. */
function substitute(p: PatternEntry, username: string | undefined, clientId: string): string | undefined {
  if (p.usesUsername && (username === undefined || username.length === 0 || !isSafeValue(username))) return undefined;
  if (p.usesClientId && !isSafeValue(clientId)) return undefined;
  if (!p.usesUsername && !p.usesClientId) return p.filter;
  // one pass, so a user name containing '%c' is not substituted again
  return p.filter.replace(/%[cu]/g, (m) => (m === '%u' ? username! : clientId));
}

/** A substituted value must not add wildcards or levels. */
function isSafeValue(value: string): boolean {
  return !value.includes('+') && !value.includes('#') && !value.includes('/');
}

class ParsedAcl implements Acl {
  readonly #anonymous: Entry[];
  readonly #users: Map<string, Entry[]>;
  readonly #patterns: PatternEntry[];

  constructor(anonymous: Entry[], users: Map<string, Entry[]>, patterns: PatternEntry[]) {
    this.#anonymous = anonymous;
    this.#users = users;
    this.#patterns = patterns;
  }

  canPublish(username: string | undefined, clientId: string, topic: string): boolean {
    return this.#check(username, clientId, 'write', (filter) => matchTopic(filter, topic));
  }

  canSubscribe(username: string | undefined, clientId: string, filter: string): boolean {
    return this.#check(
      username, clientId, 'read',
      (aclFilter) => aclFilter === filter || filterCovers(aclFilter, filter),
      (denyFilter) => filtersOverlap(denyFilter, filter),
    );
  }

  /** Deny wins: scan every applicable entry; a grant only counts if no deny applies. */
  #check(
    username: string | undefined, clientId: string, want: 'read' | 'write',
    grants: (filter: string) => boolean, denies: (filter: string) => boolean = grants,
  ): boolean {
    let granted = false;
    const visit = (access: Access, filter: string): boolean => {
      if (access === 'deny') return denies(filter); // true: stop, denied
      if (!granted && (access === 'readwrite' || access === want) && grants(filter)) granted = true;
      return false;
    };
    const own = username === undefined ? this.#anonymous : this.#users.get(username) ?? [];
    for (const e of own) if (visit(e.access, e.filter)) return false;
    for (const p of this.#patterns) {
      const filter = substitute(p, username, clientId);
      if (filter !== undefined && visit(p.access, filter)) return false;
    }
    return granted;
  }
}

/** Parse an ACL file; throws AclParseError with the line number of the first bad line. */
export function parseAcl(text: string): Acl {
  const anonymous: Entry[] = [];
  const users = new Map<string, Entry[]>();
  const patterns: PatternEntry[] = [];
  let section = anonymous;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const line = lines[i]!.trim(); // also drops a '\r' of CRLF files
    if (line.length === 0 || line.startsWith('#')) continue;
    const [keyword, rest] = splitWord(line);
    switch (keyword) {
      case 'topic':
        section.push(parseEntry(lineNo, keyword, rest));
        break;
      case 'pattern': {
        const e = parseEntry(lineNo, keyword, rest);
        patterns.push({ ...e, usesClientId: e.filter.includes('%c'), usesUsername: e.filter.includes('%u') });
        break;
      }
      case 'user': {
        if (rest.length === 0) throw new AclParseError(lineNo, '`user` without a user name');
        let entries = users.get(rest);
        if (entries === undefined) users.set(rest, (entries = []));
        section = entries;
        break;
      }
      default:
        throw new AclParseError(lineNo, `unknown directive ${JSON.stringify(keyword)} (expected topic, user or pattern)`);
    }
  }
  return new ParsedAcl(anonymous, users, patterns);
}

// Topic names and filters: validation, shared-subscription parsing and matching (MQTT 5 §4.7, §4.8).
// Pure string logic.

/** True if `topicName` is a valid PUBLISH topic name. */
export function isValidTopicName(topicName: string): boolean {
  // [MQTT-4.7.3-1] at least one character; [MQTT-3.3.2-2] no wildcards in a topic name
  if (topicName.length === 0 || topicName.length > 65535 || Buffer.byteLength(topicName, 'utf8') > 65535) return false;
  for (let i = 0; i < topicName.length; i++) {
    const c = topicName.charCodeAt(i);
    if (c === 0x23 /* # */ || c === 0x2b /* + */ || c === 0) return false;
  }
  return true;
}

/** True if `topicFilter` is a valid (non-shared) topic filter. */
export function isValidTopicFilter(topicFilter: string): boolean {
  // [MQTT-4.7.3-1] non-empty; [MQTT-4.7.3-3] at most 65535 bytes of UTF-8
  if (topicFilter.length === 0 || topicFilter.length > 65535 || Buffer.byteLength(topicFilter, 'utf8') > 65535) return false;
  if (topicFilter.includes('\u0000')) return false;
  const levels = topicFilter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#')) {
      // [MQTT-4.7.1-1] '#' occupies a whole level and is the last character
      if (level !== '#' || i !== levels.length - 1) return false;
    }
    // [MQTT-4.7.1-2] '+' occupies a whole level
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

/**
 * True if `topic` (a topic name, or the filter part of a subscription) has at most `maxBytes`
 * bytes of UTF-8 and at most `maxLevels` levels. O(1) for topics shorter than both caps: a
 * string of n UTF-16 units has between n and 3n bytes, and k levels need k - 1 separators.
 */
export function isTopicWithinLimits(topic: string, maxBytes: number, maxLevels: number): boolean {
  const n = topic.length;
  if (n > maxBytes) return false;
  if (n * 3 > maxBytes && Buffer.byteLength(topic, 'utf8') > maxBytes) return false;
  if (n >= maxLevels) {
    let levels = 1;
    for (let i = 0; i < n; i++) if (topic.charCodeAt(i) === 0x2f /* / */ && ++levels > maxLevels) return false;
  }
  return true;
}

/** True if the filter contains a wildcard. */
export function hasWildcard(topicFilter: string): boolean {
  return topicFilter.includes('+') || topicFilter.includes('#');
}

/**
 * The part of a filter before its first wildcard (all of it without one). Every topic name the
 * filter matches starts with it — except the parent level that a trailing `#` matches too
 * (`a/#` matches `a`).
 */
export function literalPrefix(topicFilter: string): string {
  const i = topicFilter.search(/[+#]/);
  return i < 0 ? topicFilter : topicFilter.slice(0, i);
}

/** A parsed `$share/{group}/{filter}`. */
export interface SharedFilter {
  shareName: string;
  topicFilter: string;
}

/**
 * Parse a shared subscription. Returns undefined for a normal filter and null for a malformed
 * `$share/...` ([MQTT-4.8.2-1] the share name has no '/', '+' or '#' and is non-empty;
 * [MQTT-4.8.2-2] a topic filter follows).
 */
export function parseSharedFilter(topicFilter: string): SharedFilter | null | undefined {
  if (!topicFilter.startsWith('$share/')) return undefined;
  const rest = topicFilter.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const shareName = rest.slice(0, slash);
  const filter = rest.slice(slash + 1);
  if (shareName.includes('+') || shareName.includes('#')) return null;
  if (!isValidTopicFilter(filter)) return null;
  return { shareName, topicFilter: filter };
}

/** Does `topicFilter` match `topicName`? '$'-topics are not matched by a leading wildcard [MQTT-4.7.2-1]. */
export function matchTopic(topicFilter: string, topicName: string): boolean {
  if (topicName.startsWith('$') && (topicFilter.startsWith('+') || topicFilter.startsWith('#'))) return false;
  const f = topicFilter.split('/');
  const t = topicName.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!;
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

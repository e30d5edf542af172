// Hub names (Web PubSub compatibility spec §1.1): a letter, then up to 127 letters, digits or
// `_`, backtick, `,`, `.`, `[`, `]`; compared case-insensitively. Pure.

const HUB_NAME = /^[A-Za-z][A-Za-z0-9_`,.[\]]{0,127}$/;

/** True if `name` is a valid hub name (this also keeps U+0000 and long names out of the store). */
export function isValidHubName(name: string): boolean {
  return HUB_NAME.test(name);
}

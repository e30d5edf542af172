// Topic matching table shared by the matchTopic, TopicTree and RetainedTree tests.

/** [filter, topic name, matches] — the table also drives the TopicTree/RetainedTree tests. */
export const matchCases: Array<[string, string, boolean]> = [
  ['a/b', 'a/b', true],
  ['a/b', 'a', false],
  ['a', 'a/b', false],
  ['A', 'a', false],
  ['a/+', 'a/b', true],
  ['a/+', 'a/b/c', false],
  ['a/+', 'a', false],
  ['a/+', 'a/', true],
  ['+', 'a', true],
  ['+', '/a', false],
  ['+/+', '/a', true],
  ['/+', '/a', true],
  ['+/b', 'a/b', true],
  ['+/+/c', 'a/b/c', true],
  ['a/#', 'a', true], // [MQTT-4.7.1-2 example] '#' also matches the parent level
  ['a/#', 'a/b', true],
  ['a/#', 'a/b/c', true],
  ['a/#', 'ab', false],
  ['a/#', 'b/a', false],
  ['a/b/#', 'a', false],
  ['+/#', 'a', true],
  ['a/+/#', 'a/b', true],
  ['a/+/#', 'a', false],
  ['#', 'a', true],
  ['#', '/', true],
  ['#', 'a/b/c', true],
  ['#', '$SYS', false], // [MQTT-4.7.2-1]
  ['#', '$SYS/x', false], // [MQTT-4.7.2-1]
  ['+', '$SYS', false], // [MQTT-4.7.2-1]
  ['+/x', '$SYS/x', false], // [MQTT-4.7.2-1]
  ['+/#', '$SYS/x', false], // [MQTT-4.7.2-1]
  ['$SYS/#', '$SYS', true],
  ['$SYS/#', '$SYS/x', true],
  ['$SYS/+', '$SYS/x', true],
  ['$SYS', '$SYS', true],
  ['a/+', 'a/$x', true], // '$' only matters in the first level
  ['a/#', 'a/$x/y', true],
];

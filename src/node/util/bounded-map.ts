/**
 * Sets `key` as the newest entry of an insertion-ordered Map and drops the oldest entries beyond
 * `limit`: the bounded caches and lists of the node (key objects, metadata, topic peers).
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > limit) {
    const oldest = map.keys().next();
    if (oldest.done) break;
    map.delete(oldest.value);
  }
}

/**
 * nginx's choice of location for a URI (ngx_http_core_find_location), pure:
 *
 * 1. an exact `= /uri` location that equals the URI wins at once, wherever it is in the file;
 * 2. else the longest prefix (plain or `^~`) that starts the URI is remembered; if it is `^~`, it wins;
 * 3. else the regex locations (`~` case-sensitive, `~*` not) are tried in file order, the first
 *    match wins;
 * 4. else the remembered longest prefix, if any.
 *
 * Named locations (`@app`) are never matched: they are reached by try_files and error_page only.
 * `uri` is the normalized path nginx matches ($uri): percent-decoded, dot segments resolved, merged
 * slashes, no query string. undefined: no location matches; nginx then uses the server's own
 * settings (`server` in the translation). Nested locations are not translated, so not matched here.
 */
import type { LocationSpec } from './location.js';
import { compileRegex } from './values.js';

const compiled = new WeakMap<LocationSpec, RegExp | null>();

function regexOf(loc: LocationSpec): RegExp | null {
  let re = compiled.get(loc);
  if (re === undefined) {
    const r = compileRegex(loc.pattern, loc.match === 'iregex');
    re = 'value' in r ? r.value : null;
    compiled.set(loc, re);
  }
  return re;
}

export function matchLocation(locations: readonly LocationSpec[], uri: string): LocationSpec | undefined {
  let longest: LocationSpec | undefined;
  for (const loc of locations) {
    if (loc.match === 'exact') {
      if (uri === loc.pattern) return loc;
    } else if (loc.match === 'prefix' || loc.match === 'noregex') {
      if (uri.startsWith(loc.pattern) && (longest === undefined || loc.pattern.length > longest.pattern.length)) longest = loc;
    }
  }
  if (longest?.match === 'noregex') return longest;
  for (const loc of locations) {
    if ((loc.match === 'regex' || loc.match === 'iregex') && regexOf(loc)?.test(uri)) return loc;
  }
  return longest;
}

/** The named location `@name` (try_files' and error_page's last resort). */
export function findNamed(locations: readonly LocationSpec[], name: string): LocationSpec | undefined {
  return locations.find((l) => l.match === 'named' && l.pattern === name);
}

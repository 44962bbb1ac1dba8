/**
 * The glob(3) that nginx's `include` uses (ngx_open_glob with flags 0): `*`, `?` and `[...]` in any
 * path segment, results sorted bytewise (nginx runs in the C locale), hidden names matched only by a
 * pattern that starts with a dot, no match is no error. Node 20 has no fs.globSync, hence this.
 */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function hasGlob(path: string): boolean {
  return /[*?[]/.test(path);
}

/** Every existing path matching the absolute `pattern`, sorted. */
export function expandGlob(pattern: string): string[] {
  const segments = pattern.split('/').filter((s) => s !== '');
  let bases = ['/'];
  for (const segment of segments) {
    const next: string[] = [];
    if (!hasGlob(segment)) {
      for (const b of bases) next.push(join(b, unescapeGlob(segment)));
    } else {
      const re = segmentRegExp(segment);
      for (const b of bases) {
        let names: string[];
        try {
          names = readdirSync(b);
        } catch {
          continue;
        }
        for (const name of names) {
          if (name.startsWith('.') && !segment.startsWith('.')) continue;
          if (re.test(name)) next.push(join(b, name));
        }
      }
    }
    bases = next;
  }
  return bases.filter(exists).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function unescapeGlob(segment: string): string {
  return segment.replace(/\\(.)/g, '$1');
}

export function segmentRegExp(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charAt(i);
    if (c === '\\' && i + 1 < segment.length) {
      re += escapeRe(segment.charAt(++i));
    } else if (c === '*') {
      re += '.*';
    } else if (c === '?') {
      re += '.';
    } else if (c === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close === -1) {
        re += '\\[';
        continue;
      }
      let body = segment.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = close;
    } else {
      re += escapeRe(c);
    }
  }
  return new RegExp(`^${re}$`, 's');
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

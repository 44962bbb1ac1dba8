/**
 * The arguments of single directives, read as nginx reads them (its handler's checks and error
 * words), into typed values. Each parser returns the value or the reason nginx would give.
 */
import { parseNginxTime } from './units.js';

export type Parsed<T> = { value: T } | { reason: string };

export type MatchType = 'exact' | 'prefix' | 'noregex' | 'regex' | 'iregex' | 'named';

/** ngx_http_core_location(): `= /x`, `^~ /x`, `~ re`, `~* re`, `/x`, `@name`, and the glued `=/x`. */
export function parseLocationArgs(args: readonly string[]): Parsed<{ match: MatchType; pattern: string }> {
  const [first = '', second] = args;
  if (second !== undefined) {
    const match = ({ '=': 'exact', '^~': 'noregex', '~': 'regex', '~*': 'iregex' } as const)[first as '='];
    if (match === undefined) return { reason: `invalid location modifier "${first}"` };
    return { value: { match, pattern: second } };
  }
  if (first.startsWith('=')) return { value: { match: 'exact', pattern: first.slice(1) } };
  if (first.startsWith('^~')) return { value: { match: 'noregex', pattern: first.slice(2) } };
  if (first.startsWith('~*')) return { value: { match: 'iregex', pattern: first.slice(2) } };
  if (first.startsWith('~')) return { value: { match: 'regex', pattern: first.slice(1) } };
  if (first.startsWith('@')) return { value: { match: 'named', pattern: first } };
  return { value: { match: 'prefix', pattern: first } };
}

/**
 * A PCRE pattern as a JavaScript RegExp. The two agree on what nginx.conf regexes use (classes,
 * anchors, groups, alternation, `\.`); PCRE's `(?P<name>` is rewritten to `(?<name>`.
 */
export function compileRegex(pattern: string, caseless: boolean): Parsed<RegExp> {
  // PCRE escapes that JavaScript would read as a plain letter, silently matching something else.
  for (let i = 0; i < pattern.length; i++) {
    if (pattern.charAt(i) !== '\\') continue;
    const next = pattern.charAt(++i);
    if ('AZzGKQE'.includes(next) && next !== '') return { reason: `regex "${pattern}" is invalid: PCRE's \\${next} is not supported` };
  }
  try {
    return { value: new RegExp(pattern.replace(/\(\?P</g, '(?<'), caseless ? 'i' : '') };
  } catch (err) {
    return { reason: `regex "${pattern}" is invalid: ${(err as Error).message.replace(/^Invalid regular expression: \/.*\/[a-z]*: /s, '')}` };
  }
}

export type ExpiresSpec = { kind: 'off' } | { kind: 'epoch' } | { kind: 'max' } | { kind: 'after'; seconds: number; modified: boolean };

/** ngx_http_headers_expires(): `[modified] time`, `epoch`, `max`, `off`; time may be negative. */
export function parseExpires(args: readonly string[]): Parsed<ExpiresSpec> {
  let rest = [...args];
  let modified = false;
  if (rest.length === 2) {
    if (rest[0] !== 'modified') return { reason: `invalid value "${rest[0]}"` };
    modified = true;
    rest = rest.slice(1);
  }
  const v = rest[0] ?? '';
  if (!modified && (v === 'off' || v === 'epoch' || v === 'max')) return { value: { kind: v } };
  if (v.startsWith('@')) return { reason: `daily expiry "${v}" is not supported by the gateway` };
  const negative = v.startsWith('-');
  const ms = parseNginxTime(negative || v.startsWith('+') ? v.slice(1) : v, true);
  if (ms === undefined) return { reason: `invalid value "${v}"` };
  return { value: { kind: 'after', seconds: (negative ? -ms : ms) / 1000, modified } };
}

export interface HeaderSpec {
  name: string;
  value: string;
  /** `always`: also on error responses (nginx adds headers only to 2xx/3xx otherwise). */
  always: boolean;
}

export function parseAddHeader(args: readonly string[]): Parsed<HeaderSpec> {
  const [name = '', value = '', flag] = args;
  if (flag !== undefined && flag !== 'always') return { reason: `invalid parameter "${flag}"` };
  return { value: { name, value, always: flag === 'always' } };
}

export interface ErrorPageSpec {
  codes: number[];
  /** `=404`: answer with this status; `'uri'` (a bare `=`): the status of what `uri` answers; null: keep the code. */
  status: number | 'uri' | null;
  /** A local URI, a named location (`@x`) or a redirect URL. */
  uri: string;
}

/** ngx_http_core_error_page(): `code ... [=[response]] uri`. */
export function parseErrorPage(args: readonly string[]): Parsed<ErrorPageSpec> {
  const uri = args[args.length - 1] ?? '';
  let codesArgs = args.slice(0, -1);
  let status: ErrorPageSpec['status'] = null;
  const last = codesArgs[codesArgs.length - 1];
  if (last?.startsWith('=')) {
    codesArgs = codesArgs.slice(0, -1);
    if (last === '=') status = 'uri';
    else if (/^=\d+$/.test(last)) status = Number(last.slice(1));
    else return { reason: `invalid value "${last}"` };
  }
  if (codesArgs.length === 0) return { reason: 'invalid number of arguments in "error_page" directive' };
  const codes: number[] = [];
  for (const c of codesArgs) {
    if (!/^\d+$/.test(c)) return { reason: `invalid value "${c}"` };
    const n = Number(c);
    if (n < 300 || n > 599 || n === 499) return { reason: `value "${c}" must be between 300 and 599` };
    codes.push(n);
  }
  return { value: { codes, status, uri } };
}

export interface ReturnSpec {
  status: number;
  /** The Location of a 301, 302, 303, 307 or 308; else the body text. Variables kept as text. */
  text: string | null;
}

const isUrl = (s: string): boolean => s.startsWith('http://') || s.startsWith('https://') || s.startsWith('$scheme');

/** ngx_http_rewrite_return(): `code [text|URL]` or `URL` (a 302). */
export function parseReturn(args: readonly string[]): Parsed<ReturnSpec> {
  const [first = '', second] = args;
  if (second === undefined && isUrl(first)) return { value: { status: 302, text: first } };
  if (!/^\d+$/.test(first) || Number(first) > 999) return { reason: `invalid return code "${first}"` };
  return { value: { status: Number(first), text: second ?? null } };
}

export interface RewriteSpec {
  regex: string;
  replacement: string;
  /** nginx's flag; a replacement starting with http://, https:// or $scheme is a `redirect` without one. */
  flag: 'last' | 'break' | 'redirect' | 'permanent' | null;
}

export function parseRewrite(args: readonly string[]): Parsed<RewriteSpec> {
  const [regex = '', replacement = '', flag] = args;
  if (flag !== undefined && flag !== 'last' && flag !== 'break' && flag !== 'redirect' && flag !== 'permanent') return { reason: `invalid parameter "${flag}"` };
  const re = compileRegex(regex, false);
  if ('reason' in re) return re;
  return { value: { regex, replacement, flag: flag ?? (isUrl(replacement) ? 'redirect' : null) } };
}

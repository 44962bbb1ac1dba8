/**
 * nginx-compat: read an nginx.conf and say what the gateway would do with it.
 *
 *   const result = importNginxConfig('/etc/nginx/nginx.conf', { strict: false });
 *   // result.errors: NginxConfigError[] (nginx's words, file:line); result.warnings: what differs
 *   // result.config: raw gateway keys for validateConfig; result.locations: per-location specs
 *
 * Imports nothing from src/proxy or src/supervisor: the proxy consumes what this produces.
 */
import { NginxConfigError } from './errors.js';
import { parseConfig, type ParseOptions } from './parser.js';
import { translate, type TranslateOptions, type TranslateResult } from './translate.js';

export interface ImportResult extends TranslateResult {
  /** Every file read, the main one first (empty when the main file could not be read). */
  files: string[];
}

/** Parse, analyse and translate; a syntax or include error comes back in `errors`, never thrown. */
export function importNginxConfig(path: string, options: TranslateOptions & ParseOptions = {}): ImportResult {
  let parsed;
  try {
    parsed = parseConfig(path, options);
  } catch (err) {
    if (!(err instanceof NginxConfigError)) throw err;
    return { config: {}, listeners: [], server: null, locations: [], warnings: [], errors: [err], files: [] };
  }
  return { ...translate(parsed.tree, options), files: parsed.files };
}

export { NginxConfigError, type NginxErrorCode, type Warning, type WarningCode } from './errors.js';
export { lex, type Token, type TokenKind } from './lexer.js';
export { parseConfig, parseText, type Directive, type Include, type ParseOptions, type ParseResult } from './parser.js';
export { DIRECTIVES, type Arity, type Context, type DirectiveSpec } from './directives.js';
export { analyze, type AnalyzeOptions, type Analysis } from './analyzer.js';
export { translate, type TranslateOptions, type TranslateResult } from './translate.js';
export type { LocationSpec, GzipSpec } from './location.js';
export type { ListenSpec } from './server.js';
export type { ExpiresSpec, HeaderSpec, ErrorPageSpec, ReturnSpec, RewriteSpec, MatchType } from './values.js';
export { matchLocation, findNamed } from './match.js';
export { compileRegex } from './values.js';

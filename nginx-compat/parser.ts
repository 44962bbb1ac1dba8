/**
 * Tokens into a tree of directives, with `include` resolved in place, as ngx_conf_parse() does.
 *
 * Relative include paths are resolved against the directory of the main file, not of the including
 * file: nginx resolves them against its conf prefix, which is the directory of the file given with
 * `-c` (ngx_process_options), so `include conf.d/*.conf;` inside `sites-enabled/app` still means
 * `<dir of nginx.conf>/conf.d/*.conf`. `prefix` overrides it (nginx's `-p`/compiled-in conf dir).
 *
 * A directive's line is the line of its name. nginx reports errors about a directive at the line of
 * its `;` or `{`: the same line unless the directive spans several.
 *
 * nginx has no include-cycle guard (a cycle ends when it runs out of file descriptors); we stop at the
 * first file that includes one of the files it is being included from.
 *
 * Blocks nest at most MAX_DEPTH deep, includes counted: the parser recurses per block, and a file of
 * 5000 `a {` overflowed the stack with a RangeError instead of an error with a line (found by
 * test/fuzz/nginx-parser.fuzz.test.ts). nginx needs no bound: only known block directives recurse
 * there, and they nest a few levels (http, server, location, if).
 */
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { NginxConfigError } from './errors.js';
import { expandGlob, hasGlob } from './glob.js';
import { endLine, lex, type Token } from './lexer.js';

/** Real configs nest under 10 levels (http, server, location, nested location, if). */
export const MAX_DEPTH = 100;

export interface Directive {
  directive: string;
  args: string[];
  line: number;
  file: string;
  /** Present for `name args { ... }`, even when empty. */
  block?: Directive[];
}

export interface Include {
  /** The `include` directive's own place. */
  file: string;
  line: number;
  pattern: string;
  /** The files it named, in the order they were read (sorted for a glob). */
  files: string[];
}

export interface ParseOptions {
  /** Directory for relative include paths; default: the main file's directory (see above). */
  prefix?: string;
}

export interface ParseResult {
  tree: Directive[];
  /** Every file read, the main one first. */
  files: string[];
  includes: Include[];
}

/** Read and parse `path` and everything it includes. Throws NginxConfigError at the first problem. */
export function parseConfig(path: string, options: ParseOptions = {}): ParseResult {
  const main = resolve(path);
  const text = readConfig(main);
  return parseText(text, main, options);
}

/** Parse `text` as if it were the file `file` (includes are read from disk). */
export function parseText(text: string, file: string, options: ParseOptions = {}): ParseResult {
  const state: State = { prefix: options.prefix ?? dirname(resolve(file)), files: [file], includes: [], stack: [realOrSelf(file)], depth: 0 };
  const tree = parseFile(text, file, state);
  return { tree, files: state.files, includes: state.includes };
}

interface State {
  prefix: string;
  files: string[];
  includes: Include[];
  /** Real paths of the files being parsed, outermost first: the cycle guard. */
  stack: string[];
  /** Blocks open around the token being read, across includes. */
  depth: number;
}

function parseFile(text: string, file: string, state: State): Directive[] {
  const tokens = lex(text, file);
  let pos = 0;
  const eof = endLine(text);
  const fail = (reason: string, line: number, code: 'GW_ERR_NGINX_SYNTAX' | 'GW_ERR_NGINX_ARGS' = 'GW_ERR_NGINX_SYNTAX'): never => {
    throw new NginxConfigError(code, reason, file, line);
  };

  const block = (inBlock: boolean): Directive[] => {
    const out: Directive[] = [];
    let words: Token[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++] as Token;
      if (t.kind === 'comment') continue;
      if (t.kind === 'word') {
        words.push(t);
        continue;
      }
      if (t.kind === '}') {
        if (words.length > 0 || !inBlock) fail('unexpected "}"', t.line);
        return out;
      }
      const [name, ...rest] = words;
      if (name === undefined) fail(`unexpected "${t.kind}"`, t.line);
      const d: Directive = { directive: (name as Token).value, args: rest.map((w) => w.value), line: (name as Token).line, file };
      words = [];
      if (d.directive === 'include') {
        // ngx_conf_handler's checks, made here because the include is resolved while parsing.
        if (t.kind === '{') fail('directive "include" is not terminated by ";"', d.line, 'GW_ERR_NGINX_ARGS');
        if (d.args.length !== 1) fail('invalid number of arguments in "include" directive', d.line, 'GW_ERR_NGINX_ARGS');
        out.push(...include(d, state));
        continue;
      }
      if (t.kind === '{') {
        if (state.depth >= MAX_DEPTH) fail(`too many nested blocks (more than ${MAX_DEPTH})`, t.line);
        state.depth++;
        d.block = block(true);
        state.depth--;
      }
      out.push(d);
    }
    if (words.length > 0) fail('unexpected end of file, expecting ";" or "}"', eof);
    if (inBlock) fail('unexpected end of file, expecting "}"', eof);
    return out;
  };
  return block(false);
}

function include(d: Directive, state: State): Directive[] {
  const pattern = d.args[0] as string;
  const full = isAbsolute(pattern) ? pattern : join(state.prefix, pattern);
  const files = hasGlob(full) ? expandGlob(full) : [full];
  state.includes.push({ file: d.file, line: d.line, pattern, files });
  const out: Directive[] = [];
  for (const f of files) {
    const real = realOrSelf(f);
    if (state.stack.includes(real)) {
      const chain = [...state.stack.slice(state.stack.indexOf(real)), real].join(' -> ');
      throw new NginxConfigError('GW_ERR_NGINX_INCLUDE', `include of "${f}" makes a cycle (${chain})`, d.file, d.line);
    }
    const text = readConfig(f, d);
    state.files.push(f);
    state.stack.push(real);
    out.push(...parseFile(text, f, state));
    state.stack.pop();
  }
  return out;
}

const STRERROR: Record<string, string> = {
  ENOENT: '2: No such file or directory',
  EACCES: '13: Permission denied',
  EISDIR: '21: Is a directory',
  ENOTDIR: '20: Not a directory',
  ELOOP: '40: Too many levels of symbolic links',
};

/** Read a file; a failure is worded as nginx's `open() "..." failed (2: No such file or directory)`. */
function readConfig(path: string, from?: Directive): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new NginxConfigError('GW_ERR_NGINX_INCLUDE', `open() "${path}" failed (${STRERROR[code] ?? code})`, from?.file, from?.line);
  }
}

function realOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return resolve(path);
  }
}

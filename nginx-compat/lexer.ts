/**
 * nginx's configuration tokens, read the way ngx_conf_read_token() reads them (src/core/ngx_conf_file.c),
 * so that a file nginx accepts gives the same words here and a file it refuses fails with its message:
 *
 * - Words end at whitespace, `;` or `{`. A `}` inside a word is part of it (`ok}` is one word, as in
 *   nginx), and so are `#`, `"` and `'` after its first character.
 * - `"..."` and `'...'` at the start of a word are quoted: any character but the closing quote, newlines
 *   included. After the closing quote nginx wants whitespace, `;`, `{` or `)`; anything else is
 *   `unexpected "X"`.
 * - A backslash protects the next character from ending the word or the quote. When the word is
 *   copied, `\"`, `\'` and `\\` lose their backslash and `\t`, `\r`, `\n` become control characters;
 *   any other backslash is kept (`\.` stays `\.` for regexes).
 * - Variables stay text: `$uri`, and `${var}` whose `{` does not open a block, as in nginx.
 * - `#` at the start of a word begins a comment up to the end of the line.
 * - Lines are counted on LF only; a token's line is the line it starts on.
 */
import { NginxConfigError } from './errors.js';

export type TokenKind = 'word' | '{' | '}' | ';' | 'comment';

export interface Token {
  kind: TokenKind;
  /** The word after unescaping, the comment text after `#`, or the punctuation itself. */
  value: string;
  line: number;
  /** The word was written in quotes: `"{"` is a word, not a block. */
  quoted: boolean;
}

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\r' || c === '\n';

export function lex(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  const fail = (reason: string): never => {
    throw new NginxConfigError('GW_ERR_NGINX_SYNTAX', reason, file, line);
  };

  while (i < n) {
    const c = text.charAt(i);
    if (isSpace(c)) {
      if (c === '\n') line++;
      i++;
      continue;
    }
    if (c === '#') {
      const end = text.indexOf('\n', i);
      const stop = end === -1 ? n : end;
      tokens.push({ kind: 'comment', value: text.slice(i + 1, stop), line, quoted: false });
      i = stop;
      continue;
    }
    if (c === '{' || c === '}' || c === ';') {
      tokens.push({ kind: c, value: c, line, quoted: false });
      i++;
      continue;
    }

    const start = line;
    if (c === '"' || c === "'") {
      let j = i + 1;
      for (;;) {
        if (j >= n) fail('unexpected end of file, expecting ";" or "}"');
        const d = text.charAt(j);
        if (d === '\n') line++;
        if (d === '\\' && j + 1 < n) {
          if (text.charAt(j + 1) === '\n') line++;
          j += 2;
          continue;
        }
        if (d === c) break;
        j++;
      }
      tokens.push({ kind: 'word', value: unescape(text.slice(i + 1, j)), line: start, quoted: true });
      i = j + 1;
      // nginx's need_space: a quoted word must be followed by a separator.
      if (i < n) {
        const d = text.charAt(i);
        if (!isSpace(d) && d !== ';' && d !== '{' && d !== ')') fail(`unexpected "${d}"`);
      }
      continue;
    }

    let j = i;
    let variable = false;
    while (j < n) {
      const d = text.charAt(j);
      if (d === '{' && variable) {
        j++;
        continue;
      }
      if (d === '\\') {
        variable = false;
        if (text.charAt(j + 1) === '\n') line++;
        j += 2;
        continue;
      }
      if (isSpace(d) || d === ';' || d === '{') break;
      variable = d === '$';
      j++;
    }
    j = Math.min(j, n);
    tokens.push({ kind: 'word', value: unescape(text.slice(i, j)), line: start, quoted: false });
    i = j;
  }
  return tokens;
}

/** The copy step of ngx_conf_read_token(). */
export function unescape(raw: string): string {
  if (!raw.includes('\\')) return raw;
  let out = '';
  for (let k = 0; k < raw.length; k++) {
    const c = raw.charAt(k);
    if (c === '\\' && k + 1 < raw.length) {
      const next = raw.charAt(k + 1);
      if (next === '"' || next === "'" || next === '\\') {
        out += next;
        k++;
        continue;
      }
      const control = next === 't' ? '\t' : next === 'r' ? '\r' : next === 'n' ? '\n' : undefined;
      if (control !== undefined) {
        out += control;
        k++;
        continue;
      }
    }
    out += c;
  }
  return out;
}

/** The line nginx reports for "unexpected end of file": one past the last line feed. */
export function endLine(text: string): number {
  let line = 1;
  for (let k = text.indexOf('\n'); k !== -1; k = text.indexOf('\n', k + 1)) line++;
  return line;
}

import { describe, expect, it } from 'vitest';
import { NginxConfigError } from '../../nginx-compat/errors.js';
import { lex, unescape } from '../../nginx-compat/lexer.js';

const words = (text: string): string[] => lex(text, '/t/nginx.conf').filter((t) => t.kind !== 'comment').map((t) => t.value);

function lexError(text: string): NginxConfigError {
  try {
    lex(text, '/t/nginx.conf');
  } catch (err) {
    expect(err).toBeInstanceOf(NginxConfigError);
    return err as NginxConfigError;
  }
  throw new Error('no error');
}

describe('nginx lexer', () => {
  it('splits words, braces and semicolons, with the line each starts on', () => {
    const tokens = lex('events {\n  worker_connections 1024;\n}\n', 'f');
    expect(tokens.map((t) => [t.kind, t.value, t.line])).toEqual([
      ['word', 'events', 1],
      ['{', '{', 1],
      ['word', 'worker_connections', 2],
      ['word', '1024', 2],
      [';', ';', 2],
      ['}', '}', 3],
    ]);
  });

  it('needs no whitespace before ; or {', () => {
    expect(words('gzip on;http{')).toEqual(['gzip', 'on', ';', 'http', '{']);
  });

  it('keeps comments as tokens, only at the start of a word', () => {
    const tokens = lex('# top\nroot /srv#not-a-comment; # trailing\n', 'f');
    expect(tokens.map((t) => [t.kind, t.value, t.line])).toEqual([
      ['comment', ' top', 1],
      ['word', 'root', 2],
      ['word', '/srv#not-a-comment', 2],
      [';', ';', 2],
      ['comment', ' trailing', 2],
    ]);
  });

  it('reads double- and single-quoted words with spaces, braces and semicolons inside', () => {
    const tokens = lex(`add_header X-A "a b;{c}" always;\nreturn 200 'single "q"';`, 'f');
    expect(tokens.filter((t) => t.kind === 'word').map((t) => [t.value, t.quoted])).toEqual([
      ['add_header', false],
      ['X-A', false],
      ['a b;{c}', true],
      ['always', false],
      ['return', false],
      ['200', false],
      ['single "q"', true],
    ]);
  });

  it('counts the lines of a quoted word that spans several', () => {
    const tokens = lex('log_format main "a\nb\nc";\ngzip on;', 'f');
    expect(tokens.find((t) => t.value === 'gzip')?.line).toBe(4);
    expect(tokens.find((t) => t.value === 'a\nb\nc')?.line).toBe(1);
  });

  it('unescapes quotes, backslashes and \\t \\r \\n, keeps other backslashes (regexes)', () => {
    expect(words(String.raw`return 200 "say \"hi\" \\ \t\n";`)).toEqual(['return', '200', 'say "hi" \\ \t\n', ';']);
    expect(words(String.raw`location ~ \.(css|js)$ {`)).toEqual(['location', '~', String.raw`\.(css|js)$`, '{']);
    expect(words(String.raw`set $a 'don\'t';`)).toEqual(['set', '$a', "don't", ';']);
    expect(unescape(String.raw`a\;b`)).toBe(String.raw`a\;b`);
  });

  it('lets a backslash protect a separator in an unquoted word', () => {
    expect(words(String.raw`rewrite ^/a\ b /c;`)).toEqual(['rewrite', String.raw`^/a\ b`, '/c', ';']);
  });

  it('keeps variables as text, ${var} included, without opening a block', () => {
    expect(words('try_files $uri/index.html ${uri}.html $uri @app;')).toEqual(['try_files', '$uri/index.html', '${uri}.html', '$uri', '@app', ';']);
    expect(words('proxy_set_header X-Real-IP "${remote_addr}";')).toEqual(['proxy_set_header', 'X-Real-IP', '${remote_addr}', ';']);
  });

  it('keeps a } that ends a word inside it, as nginx does', () => {
    expect(words('return 200 ok}')).toEqual(['return', '200', 'ok}']);
  });

  it('splits a quoted word followed by ) as nginx does for if ( ... )', () => {
    expect(words('if ($a = "b") {')).toEqual(['if', '($a', '=', 'b', ')', '{']);
  });

  it('refuses a character glued to a closing quote: unexpected "X" in FILE:LINE', () => {
    const err = lexError('http {\n  root "/srv"x;\n}');
    expect(err.message).toBe('unexpected "x" in /t/nginx.conf:2');
    expect(err.code).toBe('GW_ERR_NGINX_SYNTAX');
    expect(lexError('server { return 200 "a"}').message).toBe('unexpected "}" in /t/nginx.conf:1');
    expect(lexError("return 200 'it''s';").message).toBe('unexpected "\'" in /t/nginx.conf:1');
  });

  it('refuses an unterminated quote at the end of the file', () => {
    const err = lexError('http {\n  return 200 "open\n\n');
    expect(err.message).toBe('unexpected end of file, expecting ";" or "}" in /t/nginx.conf:4');
    expect(err.line).toBe(4);
  });
});

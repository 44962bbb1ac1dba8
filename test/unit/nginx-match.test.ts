import { describe, expect, it } from 'vitest';
import type { LocationSpec } from '../../nginx-compat/location.js';
import { findNamed, matchLocation } from '../../nginx-compat/match.js';
import { parseText } from '../../nginx-compat/parser.js';
import { translate } from '../../nginx-compat/translate.js';

function locationsOf(body: string): LocationSpec[] {
  const res = translate(parseText(`http { server { listen 80; ${body} } }`, '/t/nginx.conf').tree);
  expect(res.errors).toEqual([]);
  return res.locations;
}

const label = (l: LocationSpec | undefined): string => (l === undefined ? 'none' : `${{ exact: '=', prefix: '', noregex: '^~', regex: '~', iregex: '~*', named: '', server: '' }[l.match]} ${l.pattern}`.trim());

describe('matchLocation: the example of nginx\'s documentation and its edges', () => {
  const locations = locationsOf(String.raw`
    location / { }
    location /documents/ { }
    location ^~ /images/ { }
    location ~* \.(gif|jpg|jpeg)$ { }
    location ~ ^/api/v[0-9]+/ { }
    location /api/ { }
    location /images/large/ { }
    location @app { }
    location = / { }
  `);
  const match = (uri: string): string => label(matchLocation(locations, uri));

  it('an exact location wins at once, even written last', () => {
    expect(match('/')).toBe('= /');
  });

  it('the longest prefix wins when no regex matches', () => {
    expect(match('/index.html')).toBe('/');
    expect(match('/documents/document.html')).toBe('/documents/');
    expect(match('/api/orders')).toBe('/api/');
  });

  it('a ^~ prefix that is the longest stops the regexes', () => {
    expect(match('/images/1.gif')).toBe('^~ /images/');
  });

  it('a ^~ prefix that is not the longest does not: the regexes are tried', () => {
    expect(match('/images/large/1.gif')).toBe('~* \\.(gif|jpg|jpeg)$');
    expect(match('/images/large/readme')).toBe('/images/large/');
  });

  it('a regex beats a longer plain prefix; the first regex in file order wins', () => {
    expect(match('/documents/1.jpg')).toBe('~* \\.(gif|jpg|jpeg)$');
    expect(match('/api/v2/orders')).toBe('~ ^/api/v[0-9]+/');
    expect(match('/api/v2/logo.jpg')).toBe('~* \\.(gif|jpg|jpeg)$');
  });

  it('~* ignores case, ~ does not', () => {
    expect(match('/documents/1.JPG')).toBe('~* \\.(gif|jpg|jpeg)$');
    expect(match('/API/v2/orders')).toBe('/');
  });

  it('never matches a named location; findNamed finds it', () => {
    expect(match('@app')).toBe('none');
    expect(label(findNamed(locations, '@app'))).toBe('@app');
    expect(findNamed(locations, '@nope')).toBeUndefined();
  });

  it('matches nothing when no prefix starts the URI (nginx then uses the server level)', () => {
    const only = locationsOf('location /assets/ { } location ~ \\.php$ { }');
    expect(matchLocation(only, '/users/1')).toBeUndefined();
    expect(label(matchLocation(only, '/x.php'))).toBe('~ \\.php$');
  });

  it('reads the glued forms =/x, ^~/x, ~re and ~*re as nginx does', () => {
    const glued = locationsOf('location =/50x.html { } location ^~/assets/ { } location ~*\\.png$ { } location ~^/x { }');
    expect(glued.map(label)).toEqual(['= /50x.html', '^~ /assets/', '~* \\.png$', '~ ^/x']);
    expect(label(matchLocation(glued, '/assets/a.png'))).toBe('^~ /assets/');
    expect(label(matchLocation(glued, '/b.PNG'))).toBe('~* \\.png$');
  });

  it('reads PCRE named groups', () => {
    const named = locationsOf('location ~ ^/u/(?P<id>\\d+)$ { }');
    expect(label(matchLocation(named, '/u/42'))).toBe('~ ^/u/(?P<id>\\d+)$');
  });
});

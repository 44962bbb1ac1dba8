/**
 * nginx's gzip filter for responses the proxy sends (the app's, and static files without a
 * precompressed `.gz`): the decision is pure (gzipPlan, from ngx_http_gzip_header_filter and
 * ngx_http_gzip_ok), the compression streams through node:zlib with backpressure both ways, so no
 * body is ever held whole in memory.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGzip, type Gzip } from 'node:zlib';

export interface GzipRule {
  /** Content types (no parameters, lowercase) that are compressed; `*`: all, even none. */
  types: ReadonlySet<string> | '*';
  /** Responses with a Content-Length below this are sent as they are (gzip_min_length). */
  minLength: number;
  level: number;
  /** gzip_proxied: which responses to requests carrying Via are compressed. */
  proxied: ReadonlySet<string>;
  /** gzip_vary: `Vary: Accept-Encoding` on every response that could have been compressed. */
  vary: boolean;
  /** gzip_disable: User-Agent patterns (compiled caseless, as nginx compiles them). */
  disable: readonly RegExp[];
  /** gzip_disable msie6. */
  msie6: boolean;
  /** gzip_http_version 1.0: HTTP/1.0 requests are compressed too (nginx's default is 1.1). */
  http10: boolean;
}

/** none: untouched; vary: eligible but this client gets it plain (Vary still added); gzip: compress. */
export type GzipPlan = 'none' | 'vary' | 'gzip';

/**
 * ngx_http_gzip_header_filter: only 200, 403 and 404 are compressed (nginx's list, not every status
 * with a body), never a HEAD, never what already has a Content-Encoding, never a Content-Length
 * below gzip_min_length; the type must be listed. `get` reads a response header (any case).
 */
export function gzipPlan(rule: GzipRule, req: IncomingMessage, status: number, get: (name: string) => string | undefined): GzipPlan {
  if (status !== 200 && status !== 403 && status !== 404) return 'none';
  if (req.method === 'HEAD') return 'none';
  const encoding = get('content-encoding');
  if (encoding !== undefined && encoding !== '') return 'none';
  const length = get('content-length');
  if (length !== undefined && Number(length) < rule.minLength) return 'none';
  if (rule.types !== '*') {
    const type = get('content-type')?.split(';')[0]?.trim().toLowerCase();
    if (type === undefined || type === '' || !rule.types.has(type)) return 'none';
  }
  return clientTakes(rule, req, get) ? 'gzip' : 'vary';
}

/** ngx_http_gzip_ok: the client asked for gzip and may get it. */
function clientTakes(rule: GzipRule, req: IncomingMessage, get: (name: string) => string | undefined): boolean {
  if (!acceptsGzip(req.headers['accept-encoding'])) return false;
  const ua = req.headers['user-agent'] ?? '';
  // nginx's msie6: MSIE 4 to 6, except 6 with SV1 (XP SP2), which handles gzip.
  if (rule.msie6 && /MSIE [4-6]\./.test(ua) && !/; SV1/.test(ua)) return false;
  if (rule.disable.some((re) => re.test(ua))) return false;
  if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0 && !rule.http10) return false;
  if (req.headers.via === undefined) return true;
  return proxiedOk(rule.proxied, req, get);
}

/** gzip_proxied for a request with Via (from a proxy or CDN), in nginx's order of tests. */
function proxiedOk(p: ReadonlySet<string>, req: IncomingMessage, get: (name: string) => string | undefined): boolean {
  if (p.has('off')) return false;
  if (p.has('any')) return true;
  if (req.headers.authorization !== undefined && p.has('auth')) return true;
  const expires = get('expires');
  if (expires !== undefined) {
    if (!p.has('expired')) return false;
    const e = Date.parse(expires);
    const date = get('date');
    const now = date === undefined ? Date.now() : Date.parse(date);
    return !Number.isNaN(e) && !Number.isNaN(now) && e < now;
  }
  const cc = get('cache-control');
  if (cc !== undefined) {
    const tokens = cc.toLowerCase().split(',').map((t) => t.trim().split('=')[0]);
    return (p.has('no-cache') && tokens.includes('no-cache')) || (p.has('no-store') && tokens.includes('no-store')) || (p.has('private') && tokens.includes('private'));
  }
  if (p.has('no_last_modified') && get('last-modified') !== undefined) return false;
  if (p.has('no_etag') && get('etag') !== undefined) return false;
  return true;
}

/** `gzip` listed with a q-value other than 0 (RFC 9110 12.5.3); `*` is not taken for gzip, as nginx. */
export function acceptsGzip(value: string | undefined): boolean {
  if (value === undefined) return false;
  for (const part of value.split(',')) {
    const [coding = '', ...params] = part.split(';');
    if (coding.trim().toLowerCase() !== 'gzip') continue;
    const q = params.map((x) => x.trim().toLowerCase()).find((x) => x.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/** A case-insensitive reader over a flat [name, value, ...] list. */
export function flatGetter(headers: readonly string[]): (name: string) => string | undefined {
  return (name) => {
    for (let i = 0; i < headers.length; i += 2) if ((headers[i] as string).toLowerCase() === name) return headers[i + 1];
    return undefined;
  };
}

/**
 * The response head for a plan: Vary added (once, unless already there), and for gzip the length
 * dropped (the body is chunked), Content-Encoding set, a strong ETag made weak (the bytes differ
 * now; nginx's ngx_http_weak_etag), an ETag that is neither dropped.
 */
export function gzipHeaders(headers: readonly string[], plan: GzipPlan, rule: GzipRule): string[] {
  if (plan === 'none') return [...headers];
  const out: string[] = [];
  let varied = false;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    let value = headers[i + 1] as string;
    const lower = name.toLowerCase();
    if (lower === 'vary' && /(^|,)\s*(accept-encoding|\*)\s*(,|$)/i.test(value)) varied = true;
    if (plan === 'gzip') {
      if (lower === 'content-length') continue;
      if (lower === 'etag') {
        if (value.startsWith('"')) value = `W/${value}`;
        else if (!value.startsWith('W/')) continue;
      }
    }
    out.push(name, value);
  }
  if (rule.vary && !varied) out.push('Vary', 'Accept-Encoding');
  if (plan === 'gzip') out.push('Content-Encoding', 'gzip');
  return out;
}

/**
 * A gzip stream in front of a response. `write` answers false when zlib's input is full, which
 * happens when the client does not read (zlib's output is paused then): the caller pauses its
 * source until `onDrain`. Compressed bytes are counted as they go to the client.
 */
export class GzipWriter {
  private readonly z: Gzip;
  private waiting = false;

  constructor(
    private readonly res: ServerResponse,
    level: number,
    onDrain: () => void,
    count: (bytes: number) => void,
  ) {
    this.z = createGzip({ level });
    this.z.on('data', (chunk: Buffer) => {
      count(chunk.length);
      if (!res.write(chunk) && !this.waiting) {
        this.waiting = true;
        this.z.pause();
        res.once('drain', () => {
          this.waiting = false;
          this.z.resume();
        });
      }
    });
    this.z.on('drain', onDrain);
    this.z.on('error', () => res.destroy());
  }

  write(chunk: Buffer): boolean {
    return this.z.write(chunk);
  }

  /** Flushes the rest, ends the response, then `done`. */
  end(done: () => void): void {
    this.z.once('end', () => {
      this.res.end();
      done();
    });
    this.z.end();
  }

  destroy(): void {
    this.z.destroy();
  }
}

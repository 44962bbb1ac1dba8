/**
 * An nginx.conf's server as the proxy runs it: per location, what static.ts serves (root,
 * try_files, return...) plus what applies to every request the location takes: its rewrites, its
 * error pages (and whether the app's errors are intercepted), its body limit, the request headers it
 * sets (proxy_set_header) and gzip. Built by src/nginx-site.ts from nginx-compat's specs; without
 * an nginx.conf there is no Site and the proxy behaves as configured by the gateway's own keys.
 */
import type { ServerResponse } from 'node:http';
import type { GzipRule } from './gzip.js';
import { sendError } from './respond.js';
import type { StaticLocation } from './static.js';

/** An error_page, resolved when the site is read: a file's bytes (with its type), or a redirect. */
export type ErrorPageAnswer = { status: number | null; body: Buffer; type: string } | { status: number; location: string };

export interface RewriteRule {
  regex: RegExp;
  replacement: string;
  flag: 'last' | 'break' | 'redirect' | 'permanent' | null;
}

export interface SiteLocation extends StaticLocation {
  /** Run in order in nginx's rewrite phase, before `ret`. */
  rewrite: RewriteRule[];
  /** error_page per status (inherited from the server when the location has none). */
  errorPages: ReadonlyMap<number, ErrorPageAnswer>;
  /** proxy_intercept_errors: the app's responses with an error_page status are replaced by it. */
  interceptErrors: boolean;
  /** client_max_body_size in bytes; 0: no limit. */
  maxBodySize: number;
  /** proxy_set_header, as written (variables unexpanded); empty: the gateway's own headers. */
  setHeaders: { name: string; value: string }[];
  gzip: GzipRule | null;
}

export interface Site {
  /** The server's own settings: its rewrites and return run before a location is chosen. */
  server: SiteLocation;
  /** nginx's location choice for a decoded URI; the server's settings when none matches. */
  match(uri: string): SiteLocation;
  /** A named location (`@app`), reached by try_files' last entry as nginx's internal redirect. */
  named?(name: string): SiteLocation | undefined;
}

/**
 * Answers with an error page: the file with the error's status (or error_page's `=code`), or a
 * redirect, through respond.ts (so an unread request body gets the same lingering close). Returns
 * the status sent and the body bytes ($body_bytes_sent; none for HEAD).
 */
export function sendErrorPage(res: ServerResponse, page: ErrorPageAnswer, status: number, close: boolean, extra?: Record<string, string>): { status: number; bytes: number } {
  const code = page.status ?? status;
  if ('location' in page) return { status: code, bytes: sendError(res, code, close, { ...extra, Location: page.location }) };
  return { status: code, bytes: sendError(res, code, close, { ...extra, 'Content-Type': page.type }, page.body) };
}

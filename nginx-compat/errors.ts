/**
 * Errors and warnings about an nginx.conf, worded as nginx words them: the reason, then
 * `in FILE:LINE` (`unexpected "}" in /etc/nginx/nginx.conf:12`), so operators recognise them and
 * editors can jump to the line. Codes are stable; callers match on `code`, never on the text.
 */

export type NginxErrorCode =
  /** Tokens or blocks that nginx itself would refuse to read. */
  | 'GW_ERR_NGINX_SYNTAX'
  /** An include that cannot be read, or that includes itself. */
  | 'GW_ERR_NGINX_INCLUDE'
  /** A directive in a block where nginx does not allow it. */
  | 'GW_ERR_NGINX_CONTEXT'
  /** Wrong number of arguments, a missing `{` or `;`. */
  | 'GW_ERR_NGINX_ARGS'
  /** An argument nginx would refuse (`gzip yes`, `listen nowhere:x`). */
  | 'GW_ERR_NGINX_VALUE'
  /** A directive nginx does not know (an error only in strict mode). */
  | 'GW_ERR_NGINX_UNKNOWN'
  /** Valid nginx the gateway cannot honour at all (a TCP upstream, two upstreams). */
  | 'GW_ERR_NGINX_UNSUPPORTED';

export class NginxConfigError extends Error {
  override readonly name = 'NginxConfigError';
  constructor(
    readonly code: NginxErrorCode,
    /** The text without the location: `unexpected "}"`. */
    readonly reason: string,
    readonly file?: string,
    readonly line?: number,
  ) {
    super(file === undefined ? reason : `${reason} in ${file}:${line ?? 0}`);
  }
}

export type WarningCode =
  /** A directive nginx-compat does not know: ignored. */
  | 'GW_WARN_NGINX_UNKNOWN'
  /** A directive (or one of its parameters) with no gateway equivalent: ignored. */
  | 'GW_WARN_NGINX_IGNORED'
  /** Translated, but the gateway behaves differently in a way operators can tell. */
  | 'GW_WARN_NGINX_DIFFERS';

export interface Warning {
  code: WarningCode;
  directive: string;
  file: string;
  line: number;
  /** Worded as nginx words its own warnings: `... in FILE:LINE`. */
  message: string;
}

export function warning(code: WarningCode, directive: string, reason: string, at: { file: string; line: number }): Warning {
  return { code, directive, file: at.file, line: at.line, message: `${reason} in ${at.file}:${at.line}` };
}

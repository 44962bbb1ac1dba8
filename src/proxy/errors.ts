/**
 * Every failure the proxy answers for, as one typed error: a stable code users match on, the status
 * it maps to, who caused it, whether the request may be tried again, and the original as `cause`.
 * One mapper (`toGatewayError`) turns whatever undici or a socket threw into one of these, and one
 * renderer (`errorPage`) turns it into a response body. Internals never reach the body.
 */

export type Source = 'upstream' | 'downstream' | 'internal';

export const CODES = {
  GW_ERR_UPSTREAM_MISSING: { status: 502, source: 'upstream', retryable: true, message: 'upstream socket does not exist' },
  GW_ERR_UPSTREAM_REFUSED: { status: 502, source: 'upstream', retryable: true, message: 'upstream refused the connection' },
  GW_ERR_UPSTREAM_CONNECT_TIMEOUT: { status: 504, source: 'upstream', retryable: true, message: 'upstream did not accept in time' },
  GW_ERR_UPSTREAM_TIMEOUT: { status: 504, source: 'upstream', retryable: false, message: 'upstream did not answer in time' },
  GW_ERR_UPSTREAM_RESET: { status: 502, source: 'upstream', retryable: false, message: 'upstream closed the connection' },
  GW_ERR_UPSTREAM_BAD_RESPONSE: { status: 502, source: 'upstream', retryable: false, message: 'upstream sent an invalid response' },
  GW_ERR_UPSTREAM_PERMISSION: { status: 502, source: 'upstream', retryable: false, message: 'upstream socket not accessible' },
  GW_ERR_HOLD_EXPIRED: { status: 503, source: 'upstream', retryable: false, message: 'app server did not come back in time, or too many requests wait for it' },
  GW_ERR_CLIENT_ABORTED: { status: 499, source: 'downstream', retryable: false, message: 'client closed the connection' },
  GW_ERR_BAD_REQUEST: { status: 400, source: 'downstream', retryable: false, message: 'bad request' },
  GW_ERR_REQUEST_TIMEOUT: { status: 408, source: 'downstream', retryable: false, message: 'client too slow' },
  GW_ERR_BODY_TOO_LARGE: { status: 413, source: 'downstream', retryable: false, message: 'request body too large' },
  GW_ERR_HEADERS_TOO_LARGE: { status: 431, source: 'downstream', retryable: false, message: 'request header fields too large' },
  GW_ERR_VERSION: { status: 505, source: 'downstream', retryable: false, message: 'HTTP version not supported' },
  GW_ERR_NOT_IMPLEMENTED: { status: 501, source: 'downstream', retryable: false, message: 'transfer coding not supported' },
  GW_ERR_INTERNAL: { status: 500, source: 'internal', retryable: false, message: 'internal error' },
} as const satisfies Record<string, { status: number; source: Source; retryable: boolean; message: string }>;

export type ErrorCode = keyof typeof CODES;

export class GatewayError extends Error {
  readonly status: number;
  readonly source: Source;
  readonly retryable: boolean;

  constructor(
    readonly code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown },
  ) {
    const def = CODES[code];
    super(detail ? `${def.message}: ${detail}` : def.message, options);
    this.name = 'GatewayError';
    this.status = def.status;
    this.source = def.source;
    this.retryable = def.retryable;
  }
}

/** undici's and Node's error codes to ours. `sent` says whether any request byte reached the upstream. */
export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  const e = err as { code?: string; message?: string } | undefined;
  const code = e?.code ?? '';
  switch (code) {
    case 'ENOENT':
      return new GatewayError('GW_ERR_UPSTREAM_MISSING', undefined, { cause: err });
    case 'ECONNREFUSED':
      return new GatewayError('GW_ERR_UPSTREAM_REFUSED', undefined, { cause: err });
    case 'EACCES':
    case 'EPERM':
    case 'ENOTSOCK':
      return new GatewayError('GW_ERR_UPSTREAM_PERMISSION', code, { cause: err });
    case 'UND_ERR_CONNECT_TIMEOUT':
      return new GatewayError('GW_ERR_UPSTREAM_CONNECT_TIMEOUT', undefined, { cause: err });
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return new GatewayError('GW_ERR_UPSTREAM_TIMEOUT', undefined, { cause: err });
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_CLOSED':
      return new GatewayError('GW_ERR_UPSTREAM_RESET', undefined, { cause: err });
    case 'HPE_INVALID_CONSTANT':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_INFO':
    case 'UND_ERR_HEADERS_OVERFLOW': // a head over undici's limit (nginx "upstream sent too big header"); was a 500
      return new GatewayError('GW_ERR_UPSTREAM_BAD_RESPONSE', undefined, { cause: err });
    case 'UND_ERR_ABORTED':
      return new GatewayError('GW_ERR_CLIENT_ABORTED', undefined, { cause: err });
    default:
      if (code.startsWith('HPE_')) return new GatewayError('GW_ERR_UPSTREAM_BAD_RESPONSE', code, { cause: err });
      // undici 7 builds HTTPParserError's code from llhttp's ERROR table, which has no reverse
      // (number → name) entries, so a response that is not HTTP arrives with `code` undefined. Match
      // the class name, or garbage from the app becomes a 500 instead of a 502.
      if ((err as { name?: string } | undefined)?.name === 'HTTPParserError') return new GatewayError('GW_ERR_UPSTREAM_BAD_RESPONSE', undefined, { cause: err });
      return new GatewayError('GW_ERR_INTERNAL', undefined, { cause: err });
  }
}

const REASONS: Record<number, string> = {
  // nginx's status lines for the redirects it makes (return, rewrite, error_page URL).
  301: 'Moved Permanently',
  302: 'Moved Temporarily',
  303: 'See Other',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Not Allowed',
  410: 'Gone',
  408: 'Request Time-out',
  413: 'Request Entity Too Large',
  431: 'Request Header Fields Too Large',
  499: 'Client Closed Request',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Temporarily Unavailable',
  504: 'Gateway Time-out',
  505: 'HTTP Version Not Supported',
};

export function reasonOf(status: number): string {
  return REASONS[status] ?? 'Error';
}

const pages = new Map<number, Buffer>();

/** A small page like nginx's own error pages, cached per status. */
export function errorPage(status: number): Buffer {
  let page = pages.get(status);
  if (!page) {
    const title = `${status} ${reasonOf(status)}`;
    page = Buffer.from(`<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>web-server-gateway</center>\r\n</body>\r\n</html>\r\n`);
    pages.set(status, page);
  }
  return page;
}

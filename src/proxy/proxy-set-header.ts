/**
 * nginx's proxy_set_header on top of the headers the gateway sends upstream (headers.ts): each
 * listed field replaces every field of that name, with its variables expanded; a value that expands
 * to an empty string removes the field, as in nginx. Fields the list does not name stay as the
 * gateway sets them (its X-Forwarded-* and X-Real-IP included; nginx would pass a client's own
 * values of those unchanged). Kept apart from headers.ts: it applies only to an nginx.conf's locations.
 */
import type { IncomingMessage } from 'node:http';

/** Framing and connection fields are the gateway's (undici's) business; a list cannot set them. */
export const MANAGED = new Set(['connection', 'keep-alive', 'upgrade', 'te', 'transfer-encoding', 'content-length', 'expect', 'proxy-connection', 'trailer']);

export interface SetHeaderVars {
  /** $remote_addr: the client address, through trusted proxies (realip) when configured. */
  remoteAddr: string;
  scheme: string;
}

export function applyProxySetHeader(headers: readonly string[], list: readonly { name: string; value: string }[], req: IncomingMessage, vars: SetHeaderVars): string[] {
  const names = new Set(list.map((h) => h.name.toLowerCase()).filter((n) => !MANAGED.has(n)));
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!names.has((headers[i] as string).toLowerCase())) out.push(headers[i] as string, headers[i + 1] as string);
  }
  for (const h of list) {
    if (!names.has(h.name.toLowerCase())) continue;
    const value = expand(h.value, req, vars);
    if (value !== '') out.push(h.name, value);
  }
  return out;
}

/** The variables Rails configs use: $host, $http_host, $remote_addr, $proxy_add_x_forwarded_for, $scheme, $request_uri, $server_port, $http_NAME. */
function expand(value: string, req: IncomingMessage, vars: SetHeaderVars): string {
  return value.replace(/\$(?:\{([a-z0-9_]+)\}|([a-z0-9_]+))/gi, (whole, a?: string, b?: string) => {
    const name = (a ?? b ?? '').toLowerCase();
    const header = (n: string): string => {
      const v = req.headers[n];
      return Array.isArray(v) ? v.join(', ') : (v ?? '');
    };
    switch (name) {
      case 'host':
        return header('host').replace(/:\d+$/, '').toLowerCase();
      case 'remote_addr':
        return vars.remoteAddr;
      case 'proxy_add_x_forwarded_for': {
        const xff = header('x-forwarded-for');
        return xff === '' ? vars.remoteAddr : `${xff}, ${vars.remoteAddr}`;
      }
      case 'scheme':
        return vars.scheme;
      case 'request_uri':
        return req.url ?? '/';
      case 'server_port':
        return String(req.socket.localPort ?? '');
      default:
        return name.startsWith('http_') ? header(name.slice(5).replace(/_/g, '-')) : whole;
    }
  });
}

/** `HOST:PORT`, `[v6]:PORT` or `PORT` (all addresses), as nginx's `listen` takes them. */
export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(value: unknown): HostPort | undefined {
  if (typeof value !== 'string') return undefined;
  let host = '0.0.0.0';
  let portText = value;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(value);
  if (v6) {
    host = v6[1] as string;
    portText = v6[2] as string;
  } else if (value.includes(':')) {
    const i = value.lastIndexOf(':');
    host = value.slice(0, i);
    portText = value.slice(i + 1);
    if (host === '' || host.includes(':')) return undefined;
  }
  if (!/^\d+$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65535) return undefined;
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

export interface Listener extends HostPort {
  /** Reads the PROXY protocol header before HTTP (nginx's `listen ... proxy_protocol`). */
  proxyProtocol: boolean;
}

/** `HOST:PORT` with nginx's optional ` proxy_protocol` after it; a reason when it is not one. */
export function parseListener(value: unknown): Listener | { problem: string } {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string') return { problem: 'is not HOST:PORT' };
  const [address = '', ...params] = text.trim().split(/\s+/);
  const hp = parseHostPort(address);
  if (!hp) return { problem: 'is not HOST:PORT' };
  let proxyProtocol = false;
  for (const p of params) {
    if (p === 'proxy_protocol') proxyProtocol = true;
    else return { problem: `has the unknown parameter "${p}"` };
  }
  return { ...hp, proxyProtocol };
}

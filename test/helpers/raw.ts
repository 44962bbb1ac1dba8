/** A raw HTTP client: bytes in, bytes out, and whether the gateway closed the connection. */
import net from 'node:net';

export interface RawResult {
  /** Everything received, as latin1 text. */
  text: string;
  /** The status of the first response, or 0 when none came. */
  status: number;
  /** The gateway closed (FIN or reset) before `waitMs` ran out. */
  closed: boolean;
}

export async function rawRequest(port: number, data: string | Buffer | (string | Buffer)[], opts: { waitMs?: number; halfClose?: boolean; host?: string } = {}): Promise<RawResult> {
  const waitMs = opts.waitMs ?? 2000;
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: opts.host ?? '127.0.0.1', allowHalfOpen: true });
    let text = '';
    let closed = false;
    socket.on('data', (c) => (text += c.toString('latin1')));
    socket.on('error', () => undefined);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      resolve({ text, status: m ? Number(m[1]) : 0, closed });
    };
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    const timer = setTimeout(finish, waitMs);
    socket.on('connect', () => {
      for (const part of Array.isArray(data) ? data : [data]) socket.write(part);
      if (opts.halfClose) socket.end();
    });
  });
}

/** Splits a raw response text into head fields (lowercased names) and body. */
export function parseHead(text: string): { status: number; headers: Record<string, string[]>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const body = end === -1 ? '' : text.slice(end + 4);
  const [line = '', ...rest] = head.split('\r\n');
  const headers: Record<string, string[]> = {};
  for (const l of rest) {
    const i = l.indexOf(':');
    const name = l.slice(0, i).trim().toLowerCase();
    (headers[name] ??= []).push(l.slice(i + 1).trim());
  }
  return { status: Number(line.split(' ')[1] ?? 0), headers, body };
}

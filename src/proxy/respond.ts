/**
 * Answering a client with an error: through the ServerResponse when there is one, or as raw bytes on
 * the socket when the HTTP parser failed. After an early answer the connection is closed the way
 * nginx's lingering close does it: our side ends, unread request bytes are read and discarded (never
 * parsed as a next request) until the client closes or a bound is reached, so the client reads the
 * answer instead of a reset.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { errorPage, reasonOf } from './errors.js';

/** nginx's lingering_time and lingering_timeout, and a cap on what we discard. */
const LINGER_MS = 5_000;
const LINGER_BYTES = 1024 * 1024;

/** Returns the body bytes sent ($body_bytes_sent: the page, none for HEAD). */
export function sendError(res: ServerResponse, status: number, close: boolean, extra?: Record<string, string>, page?: Buffer): number {
  const body = page ?? errorPage(status);
  if (close) {
    res.shouldKeepAlive = false;
    lingerOnClose(res.socket);
  }
  res.writeHead(status, reasonOf(status), {
    'Content-Type': 'text/html',
    'Content-Length': body.length,
    ...(close ? { Connection: 'close' } : {}),
    ...extra,
  });
  const head = res.req.method === 'HEAD';
  res.end(head ? undefined : body);
  return head ? 0 : body.length;
}

/** For parser errors: no ServerResponse exists, the socket is ours. */
export function sendRawError(socket: Socket, status: number, extra?: Record<string, string>, page?: Buffer, method?: string): number {
  const body = page ?? errorPage(status);
  let fields = '';
  for (const [k, v] of Object.entries(extra ?? {})) fields += `${k}: ${v}\r\n`;
  const head = `HTTP/1.1 ${status} ${reasonOf(status)}\r\nContent-Type: text/html\r\nContent-Length: ${body.length}\r\n${fields}Connection: close\r\n\r\n`;
  if (socket.writable) {
    linger(socket);
    // The answer to a HEAD (when the request was read far enough to know it) has no body.
    const bodyless = method === 'HEAD';
    socket.end(bodyless ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), body]));
    return bodyless ? 0 : body.length;
  }
  socket.destroy();
  return 0;
}

/** Node ends a `Connection: close` response with socket.destroySoon(); make that a lingering close. */
function lingerOnClose(socket: Socket | null): void {
  if (!socket) return;
  // Answered: a parser error in bytes already read (server.ts onClientError) must not write a
  // second response after this one (a 501 was followed by a 400; adversarial suite).
  (socket as Socket & { answered?: boolean }).answered = true;
  (socket as Socket & { destroySoon: () => void }).destroySoon = () => {
    linger(socket);
    socket.end();
  };
}

function linger(socket: Socket): void {
  if ((socket as Socket & { lingering?: boolean }).lingering) return;
  (socket as Socket & { lingering?: boolean }).lingering = true;
  // Detach the HTTP parser: what follows is discarded, never parsed as a request.
  socket.removeAllListeners('data');
  let seen = 0;
  socket.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > LINGER_BYTES) socket.destroy();
  });
  socket.on('end', () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.setTimeout(0);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  socket.resume();
}

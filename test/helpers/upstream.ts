/** Real upstream servers on Unix sockets in a fresh mkdtemp directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'gw-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Upstream<S extends net.Server = http.Server> {
  server: S;
  socketPath: string;
  close(): Promise<void>;
}

/** A Node HTTP server on a Unix socket. */
export async function httpUpstream(socketPath: string, handler: http.RequestListener): Promise<Upstream> {
  const server = http.createServer(handler);
  server.keepAliveTimeout = 20_000;
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    server,
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A raw TCP-level upstream on a Unix socket: the test writes whatever bytes it wants. */
export async function rawUpstream(socketPath: string, onConnection: (socket: net.Socket) => void): Promise<Upstream<net.Server>> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    server,
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * The app's answers whose framing tests check (framing.test.ts, fast-path.test.ts): a fixed length,
 * chunked in two writes, 204, 304, a chunked body with a trailer. Returns false for other URLs.
 */
export function framingAnswer(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const head = req.method === 'HEAD';
  switch (req.url) {
    case '/fixed':
      res.writeHead(200, { 'Content-Length': '11' });
      res.end(head ? undefined : 'hello world');
      return true;
    case '/chunked':
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('first,');
      setTimeout(() => res.end('second'), 20);
      return true;
    case '/204':
      res.writeHead(204, { 'X-Kind': 'no-content' });
      res.end();
      return true;
    case '/304':
      res.writeHead(304, { ETag: '"v1"' });
      res.end();
      return true;
    case '/trailers':
      // Node refuses a Trailer field on a response without a body (HEAD).
      res.writeHead(200, head ? { 'Content-Type': 'text/plain' } : { 'Content-Type': 'text/plain', Trailer: 'X-Checksum' });
      res.write('body-with-trailer');
      if (!head) res.addTrailers({ 'X-Checksum': 'abc123' });
      res.end();
      return true;
    default:
      return false;
  }
}

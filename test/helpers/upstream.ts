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

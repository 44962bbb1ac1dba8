// Peer: the classic node-http-proxy, configured the way people run it in production
// (keep-alive agent to the Unix socket, 502 on upstream errors).
import http from 'node:http';
import httpProxy from 'http-proxy';
import { parsePeerArgs } from './args.mjs';

const { host, port, socketPath } = parsePeerArgs(process.argv.slice(2));
// Without a keep-alive agent every request would open a new upstream connection.
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const proxy = httpProxy.createProxyServer({ target: { socketPath }, agent });

proxy.on('error', (_err, _req, res) => {
  // res is a socket for upgrade errors; only answer real responses that have not started.
  if (typeof res.writeHead === 'function' && !res.headersSent) res.writeHead(502).end();
  else res.destroy();
});

http.createServer((req, res) => proxy.web(req, res)).listen(port, host);

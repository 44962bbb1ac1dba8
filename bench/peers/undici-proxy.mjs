// Peer: the thinnest reasonable proxy on undici, i.e. roughly the floor cost of
// "Node HTTP server + undici Pool" without any of the gateway's features.
import http from 'node:http';
import { Pool } from 'undici';
import { parsePeerArgs, HOP_BY_HOP } from './args.mjs';

const { host, port, socketPath } = parsePeerArgs(process.argv.slice(2));
// The origin is only used for the Host header; the connection goes to the socket.
const pool = new Pool('http://localhost', { socketPath, connections: 128 });

function strip(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  return out;
}

const server = http.createServer((req, res) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  // pool.stream writes the upstream body straight into `res`; measured clearly faster
  // here than pool.request + pipeline(), which adds an intermediate Readable.
  pool.stream(
    { path: req.url, method: req.method, headers: strip(req.headers), body: hasBody ? req : undefined },
    ({ statusCode, headers }) => {
      res.writeHead(statusCode, strip(headers));
      return res;
    },
  ).catch(() => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
});
// nginx keeps an idle client connection 75 s, the gateway 65 s; Node's 5 s would close a
// browser's connection between two clicks (and the memory bench's, while it opens 10,000).
server.keepAliveTimeout = 75_000;
server.listen(port, host);

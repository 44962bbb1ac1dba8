// Peer (opt-in, `--only native-floor`): the floor of a Node proxy, both sides on Node's native HTTP
// parser (`_http_common`'s HTTPParser, the one the gateway's upstream client uses) over raw
// sockets, without Node's http module: no request/response objects, no header validation, no
// limits, timeouts, errors, body handling or pipelining beyond queueing. Not a proxy anyone should
// run: it measures what a Node proxy could reach if its client side were built like the gateway's
// upstream side (docs/performance.md). GET and HEAD without bodies only, tiny responses.
import net from 'node:net';
import { createRequire } from 'node:module';
import { parsePeerArgs } from './args.mjs';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const { host, port, socketPath } = parsePeerArgs(process.argv.slice(2));
const idle = [];

function upstream() {
  const s = net.connect(socketPath);
  const p = new HTTPParser();
  p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
  const c = { s, p, client: null, head: null };
  p[HTTPParser.kOnHeadersComplete] = (_maj, _min, h, _m, _u, status, text) => {
    let head = `HTTP/1.1 ${status} ${text}\r\n`;
    for (let i = 0; i < h.length; i += 2) if (h[i].toLowerCase() !== 'connection') head += `${h[i]}: ${h[i + 1]}\r\n`;
    c.head = `${head}Connection: keep-alive\r\n\r\n`;
    return 0;
  };
  p[HTTPParser.kOnBody] = (b) => {
    if (c.head) {
      c.client.cork();
      c.client.write(c.head, 'latin1');
      c.head = null;
    }
    c.client.write(b);
  };
  p[HTTPParser.kOnMessageComplete] = () => {
    const client = c.client;
    if (c.head) client.write(c.head, 'latin1');
    else client.uncork();
    c.head = null;
    c.client = null;
    idle.push(c);
    client.next();
  };
  s.on('data', (d) => p.execute(d));
  s.on('error', () => {});
  return c;
}

net.createServer((client) => {
  const p = new HTTPParser();
  p.initialize(HTTPParser.REQUEST, {}, 0, 0);
  const queue = [];
  let busy = false;
  const go = (head) => {
    busy = true;
    const u = idle.pop() ?? upstream();
    u.client = client;
    u.s.write(head, 'latin1');
  };
  client.next = () => {
    busy = false;
    const head = queue.shift();
    if (head) go(head);
  };
  p[HTTPParser.kOnHeadersComplete] = (_maj, _min, h, method, url) => {
    let head = `${methods[method]} ${url} HTTP/1.1\r\n`;
    for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
    head += `X-Forwarded-For: ${client.remoteAddress}\r\nconnection: keep-alive\r\n\r\n`;
    if (busy) queue.push(head);
    else go(head);
    return 0;
  };
  client.on('data', (d) => p.execute(d));
  client.on('error', () => {});
}).listen(port, host);

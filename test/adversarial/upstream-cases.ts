/**
 * The app side of the adversarial suite: the raw bytes a misbehaving app server sends, and what the
 * client must get (REFERENCE.md, "Faults a proxy must survive"; docs/errors.md). Each case names the
 * status (null: the head never comes), whether the gateway closes the client connection, the body
 * the client gets and whether it ends cleanly, and how many times the app may see the request.
 *
 * The gateway runs with --proxy-read-timeout 1s --hold-timeout 0 (upstream.test.ts).
 */
import type net from 'node:net';

export interface UpstreamCase {
  name: string;
  source: string;
  method?: 'GET' | 'POST';
  /** What the app does once it has read the request. */
  answer: (socket: net.Socket) => void;
  /** Status of the response the client gets; null: no response head at all. */
  status: number | null;
  /** The gateway closes the client connection after (or instead of) the response. */
  closed: boolean;
  /** The body the client gets, exactly (checked when given). */
  body?: string;
  /** The response ends by its framing (false: truncated by the close). Default true. */
  complete?: boolean;
  /** Times the app sees the request (a replayable GET is sent once more after a reset). */
  appSaw: number;
}

const ok = (body: string, extra = '') => `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${body.length}\r\n\r\n${body}`;
const write = (data: string | Buffer) => (s: net.Socket) => s.write(data);
const writeThenClose = (data: string | Buffer) => (s: net.Socket) => s.end(data);
const later = (ms: number, f: (s: net.Socket) => void) => (s: net.Socket) => void setTimeout(() => !s.destroyed && f(s), ms);

export const UPSTREAM_CASES: UpstreamCase[] = [
  { name: 'a well-formed answer (the control)', source: 'baseline', answer: write(ok('fine')), status: 200, closed: false, body: 'fine', appSaw: 1 },
  {
    name: 'the app closes before any response byte (GET: replayed once, then 502)',
    source: 'REFERENCE.md: upstream dies before any response byte; docs/proxy.md Forwarding',
    answer: (s) => s.destroy(),
    status: 502,
    closed: false,
    appSaw: 2,
  },
  {
    name: 'the app closes before any response byte (POST: never replayed)',
    source: 'REFERENCE.md; nginx never retries POST (non_idempotent off)',
    method: 'POST',
    answer: (s) => s.destroy(),
    status: 502,
    // The request was read to its end: the client connection stays usable.
    closed: false,
    appSaw: 1,
  },
  { name: 'the app closes in the middle of its head', source: 'nginx "upstream prematurely closed connection while reading response header"', method: 'POST', answer: writeThenClose('HTTP/1.1 200 OK\r\nContent-Le'), status: 502, closed: false, appSaw: 1 },
  { name: 'a response with Content-Length and Transfer-Encoding', source: 'nginx "upstream sent Content-Length and Transfer-Encoding" → 502', answer: write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'two different Content-Length fields', source: 'RFC 9112 6.3 (5): unrecoverable framing error', answer: write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'), status: 502, closed: false, appSaw: 1 },
  { name: 'a negative Content-Length', source: 'RFC 9110 8.6', answer: write('HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello'), status: 502, closed: false, appSaw: 1 },
  { name: 'a status line with letters in the code', source: 'nginx "upstream sent no valid HTTP/1.0 header"', answer: write('HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'a four-digit status', source: 'RFC 9112 4: status-code = 3DIGIT', answer: write('HTTP/1.1 1000 Odd\r\nContent-Length: 0\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'a status line that is not HTTP ("ICY 200 OK")', source: 'SHOUTcast answers; nginx 502', answer: write('ICY 200 OK\r\nContent-Length: 0\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'garbage instead of a response', source: 'REFERENCE.md: garbage or bad framing → 502, no retry', answer: write('this is not HTTP at all\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'a NUL inside a response header', source: 'RFC 9110 5.5', answer: write('HTTP/1.1 200 OK\r\nX-Bad: a\x00b\r\nContent-Length: 0\r\n\r\n'), status: 502, closed: false, appSaw: 1 },
  { name: 'a response header larger than undici accepts (20 KB)', source: 'nginx "upstream sent too big header" → 502', answer: write(`HTTP/1.1 200 OK\r\nX-Huge: ${'h'.repeat(20_000)}\r\nContent-Length: 0\r\n\r\n`), status: 502, closed: false, appSaw: 1 },
  {
    name: 'a bad chunk size in the first chunk (the head is not sent yet: a clean 502)',
    source: 'docs/proxy.md: the head goes with the first body byte',
    answer: write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nhello\r\n0\r\n\r\n'),
    status: 502,
    closed: false,
    appSaw: 1,
  },
  {
    name: 'a body shorter than its Content-Length, then a close',
    source: 'REFERENCE.md: upstream dies mid-response: abort the client connection',
    answer: (s) => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789');
      setTimeout(() => s.destroy(), 50);
    },
    status: 200,
    closed: true,
    body: '0123456789',
    complete: false,
    appSaw: 1,
  },
  {
    name: 'a chunked body cut before its last chunk',
    source: 'REFERENCE.md: never end the response cleanly (no final chunk)',
    answer: (s) => {
      s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
      setTimeout(() => s.destroy(), 50);
    },
    status: 200,
    closed: true,
    complete: false,
    appSaw: 1,
  },
  {
    name: 'a body longer than its Content-Length',
    source: 'REFERENCE.md: forward exactly the length, drop the rest, do not reuse',
    answer: write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nforged!'),
    status: 200,
    closed: false,
    body: 'hello',
    appSaw: 1,
  },
  {
    name: 'a second response nobody asked for, on the idle connection',
    source: 'REFERENCE.md: a response to a request that was not sent; HAProxy reg-test h1 desync',
    answer: (s) => {
      s.write(ok('first'));
      setTimeout(() => !s.destroyed && s.write(ok('unsolicited')), 30);
    },
    status: 200,
    closed: false,
    body: 'first',
    appSaw: 1,
  },
  {
    name: 'a 204 with body bytes after it',
    source: 'RFC 9110 15.3.5: a 204 has no content; the bytes must not become the next response',
    answer: write('HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged'),
    status: 204,
    closed: false,
    body: '',
    appSaw: 1,
  },
  {
    name: 'a flood of 1xx interim responses before the answer',
    source: 'REFERENCE.md: a 1xx flood; RFC 9110 15.2',
    // The upstream client takes at most 10 interim responses (upstream.ts): past them the app is
    // out of step, a bad response answered 502 and not replayed, before any byte reached the
    // client; nothing of the flood reaches the client and the follow-up is clean.
    answer: write('HTTP/1.1 100 Continue\r\n\r\n'.repeat(500) + ok('after-1xx')),
    status: 502,
    closed: false,
    appSaw: 1,
  },
  {
    name: 'a 101 Switching Protocols to a request that asked for no upgrade',
    source: 'RFC 9110 15.2.2: 101 only answers an Upgrade',
    answer: write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'),
    status: 502,
    closed: false,
    // The upstream client fails the exchange before any response byte reached the client (as
    // undici does): a body-less GET is replayed once (docs/proxy.md), and the second 101 is a 502.
    appSaw: 2,
  },
  {
    name: 'no response within --proxy-read-timeout',
    source: 'REFERENCE.md: upstream slow: 504 before headers',
    method: 'POST',
    answer: () => undefined,
    status: 504,
    closed: false,
    appSaw: 1,
  },
  {
    name: 'a body that stalls past --proxy-read-timeout',
    source: 'REFERENCE.md: abort the client if the body stalls',
    answer: write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nstart'),
    status: 200,
    closed: true,
    body: 'start',
    complete: false,
    appSaw: 1,
  },
  {
    name: 'a head that arrives in pieces, slowly but within the timeout',
    source: 'control for the timeout cases: pauses under --proxy-read-timeout are fine',
    answer: (s) => {
      s.write('HTTP/1.1 200 O');
      later(300, (x) => x.write('K\r\nContent-Le'))(s);
      later(600, (x) => x.write('ngth: 4\r\n\r\nslow'))(s);
    },
    status: 200,
    closed: false,
    body: 'slow',
    appSaw: 1,
  },
];

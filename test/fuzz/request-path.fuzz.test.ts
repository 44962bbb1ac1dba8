/**
 * Fuzzing the request path with fast-check: one real gateway (the CLI, one process) in front of a
 * raw upstream that parses what it receives with a strict HTTP/1.1 parser (test/helpers/fuzz-http.ts)
 * and answers each complete request 200 with an `X-Upstream-Id`. Each case is 1-3 pipelined
 * requests from a grammar with mutations (methods, targets, versions, line ends, header names and
 * values with CR/LF/NUL/spaces/obs-fold/underscores, Host missing or twice, Content-Length and
 * Transfer-Encoding duplicated or conflicting, chunked bodies with extensions and bad sizes), sent
 * as raw bytes over TCP. See test/fuzz/README.md.
 *
 * Properties, per case:
 * - the client gets well-formed HTTP/1.1 responses (status line, fields, framing), at most one per
 *   request and nothing after them, or a close;
 * - the gateway stays up and logs no uncaught error;
 * - what reaches the upstream parses strictly, into exactly the requests answered with the
 *   upstream's response (their ids): never one more (no smuggled request), none answered by the
 *   gateway itself with an error (a rejected request never reaches the app);
 * - a well-formed request (and every well-formed one before it) is proxied, and the upstream sees
 *   its method, target and body unchanged.
 */
import { once } from 'node:events';
import { join } from 'node:path';
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.js';
import { fuzzParams, fuzzTimeout } from '../helpers/fuzz.js';
import { field, parseResponses, parseStrictRequest, type StrictRequest } from '../helpers/fuzz-http.js';
import { rawUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const SECONDS = 25;
const RUNS = 3000;
/** A case is over when nothing arrived for this long (a request still waiting for its body). */
const IDLE_MS = 400;

// ---------------------------------------------------------------------------------------------
// The upstream: strict, recording

interface Received extends StrictRequest {
  id: number;
}
const received: Received[] = [];
/** Strict parse failures: each is a request the gateway sent that a strict server would read otherwise. */
const violations: { reason: string; bytes: string }[] = [];
let nextId = 1;

function onUpstreamConnection(socket: net.Socket): void {
  let buf = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const r = parseStrictRequest(buf);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'error') {
        violations.push({ reason: r.reason, bytes: buf.toString('latin1').slice(0, 2000) });
        socket.destroy();
        return;
      }
      const id = nextId++;
      received.push({ ...r.value, id });
      buf = buf.subarray(r.used);
      socket.write(`HTTP/1.1 200 OK\r\nX-Upstream-Id: ${id}\r\nContent-Length: 2\r\n\r\nok`);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// The request grammar

/** A piece of a request and whether it is well-formed (then the gateway must pass it on intact). */
interface Part {
  text: string;
  ok: boolean;
}
const good = (...xs: string[]): fc.Arbitrary<Part> => fc.constantFrom(...xs).map((text) => ({ text, ok: true }));
const bad = (...xs: string[]): fc.Arbitrary<Part> => fc.constantFrom(...xs).map((text) => ({ text, ok: false }));
const mostly = (g: fc.Arbitrary<Part>, b: fc.Arbitrary<Part>, weight = 8): fc.Arbitrary<Part> => fc.oneof({ weight, arbitrary: g }, { weight: 1, arbitrary: b });

const METHODS_WITH_BODY = ['POST', 'PUT', 'PATCH'];
const method = mostly(
  good('GET', 'HEAD', 'DELETE', 'OPTIONS', ...METHODS_WITH_BODY),
  fc.oneof(bad('TRACE', 'PROPFIND', 'M-SEARCH', 'get', 'G\tET', 'G ET', '', 'CONNECT', 'PRI', 'X'.repeat(200), 'G\xc9T', 'GET\x00', '(GET)'), fc.string({ maxLength: 6 }).map((text) => ({ text, ok: false }))),
);
/** Well-formed targets, and the target the upstream must see for each (absolute-form becomes origin-form). */
const TARGETS: Record<string, string> = { '/': '/', '/a/b?c=d&e': '/a/b?c=d&e', '/%41%42/%2F': '/%41%42/%2F', '/x;p=1': '/x;p=1', '/~u/.././x': '/~u/.././x', 'http://example.com/abs?q': '/abs?q', 'http://example.com': '/' };
const target = mostly(
  fc.oneof(good(...Object.keys(TARGETS)), fc.stringMatching(/^\/[A-Za-z0-9._~!$&'()*+,;=:@/-]{0,30}$/).map((text) => ({ text, ok: true }))),
  fc.oneof(
    bad('*', 'http://', 'https://h:99999/', '//double', '/a b', '/a\tb', '/\x7f', '/\xe9', '/\x00', '/%zz', 'example.com:443', 'javascript:alert(1)', '', `/${'a'.repeat(9000)}`, '/?\r\nX-Injected: y', 'HTTP://EXAMPLE.COM/', 'http://user@host/', 'http://[::1]/', 'http://h/\\..', 'ftp://h/', '/#frag', '/\r'),
    fc.string({ unit: 'binary', maxLength: 10 }).map((text) => ({ text: `/${text}`, ok: false })),
  ),
);
const version = mostly(good('HTTP/1.1'), bad('HTTP/1.0', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/1.10', 'HTTP/1.1 ', 'HTTP/1', '', 'HTTP/3', 'HTTP/1.1\t', 'HTTP/1.2'));
const eol = mostly(good('\r\n'), bad('\n', '\r', '\n\r'), 15);
const host = mostly(good('Host: example.com', 'host: a.example:8080', 'HOST: [::1]:80'), bad('', 'Host: a\r\nHost: b', 'Host:', 'Host: exa mple', 'Host: h\x00', 'Host : h', ' Host: h', 'Host: h\r\nhost: h'), 10);
/** Header lines; the bad ones each break RFC 9112 in one way. */
const header = mostly(
  good(
    'X-A: b',
    'User-Agent: fuzz/1',
    'Accept: */*',
    'X-Empty:',
    'Cookie: a=b; c=d',
    'Authorization: Bearer x',
    'X-Forwarded-For: 1.2.3.4',
    'X-Forwarded-Proto: https',
    'Connection: keep-alive',
    'Via: 1.1 x',
    'Forwarded: for=1.2.3.4',
    'TE: trailers',
    'Keep-Alive: timeout=5',
    'Connection: X-A',
    'X-Sp: \t spaced \t',
    'Content-Type: text/plain',
    'Expect: 100-continue',
    'X-Obs: caf\xe9',
  ),
  bad(
    'X-A : b',
    'X A: b',
    ': b',
    'NoColon',
    ' X-Lead: b',
    'X-Fold: a\r\n b',
    'X-Fold: a\r\n\tb',
    'X-Nul: a\x00b',
    'X-CR: a\rb',
    'X-LF: a\nb',
    'X_Under: 1',
    `X-Long: ${'a'.repeat(40000)}`,
    'Connection: close',
    'Connection: Upgrade\r\nUpgrade: websocket',
    'Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings',
    'Expect: bogus',
    '\x80Bad: x',
    'X-Del: a\x7fb',
    Array.from({ length: 120 }, (_, i) => `X-F${i}: v`).join('\r\n'),
    'Proxy-Connection: keep-alive',
    'Content-Length: 0',
    'Transfer-Encoding: chunked',
  ),
  6,
);

interface Framing {
  /** Header lines. */
  fields: string[];
  /** Bytes after the head. */
  body: string;
  /** What the upstream must receive, when well-formed. */
  decoded: string;
  ok: boolean;
}
const payload = fc.string({ unit: 'binary-ascii', maxLength: 40 });
// BWS before `;` is RFC 9112's, but llhttp refuses it (a smuggling vector elsewhere): no expectation.
const ext = mostly(good('', ';a=b', ';a', ';a="q v"'), bad(' ;a=b', ';\x00', ';a=b c', ';"x"', '; =', `;${'e'.repeat(5000)}`));
const chunkSize = (n: number): fc.Arbitrary<Part> =>
  mostly(fc.constantFrom(n.toString(16), n.toString(16).toUpperCase(), `000${n.toString(16)}`).map((text) => ({ text, ok: true })), bad('g', '-1', `0x${n.toString(16)}`, ` ${n}`, `${n} `, 'fffffffffffffffff', '', `${n + 1}`, `${n > 0 ? n - 1 : 1}`));
const chunk = payload.filter((p) => p.length > 0).chain((p) => fc.tuple(chunkSize(p.length), ext, mostly(good('\r\n'), bad('\n', '', '\r\r\n'), 12)).map(([size, e, end]) => ({ text: `${size.text}${e.text}\r\n${p}${end.text}`, data: p, ok: size.ok && e.ok && end.ok })));
const lastChunk = mostly(good('0\r\n\r\n', '0;x=y\r\n\r\n', '0\r\nX-Trailer: t\r\n\r\n'), bad('', '0\r\n', '0\r\nX T: t\r\n\r\n', '0\r\nX-T: a\r\n b\r\n\r\n', '0\n\n', '1\r\n\r\n'));
const te = mostly(good('Transfer-Encoding: chunked'), bad('Transfer-Encoding: Chunked', 'Transfer-Encoding:  chunked ', 'Transfer-Encoding: chunked, chunked', 'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: chunked, gzip', 'Transfer-Encoding: identity', 'Transfer-Encoding: xchunked', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked', 'Transfer-Encoding:\tchunked', 'Transfer-Encoding : chunked', 'Transfer_Encoding: chunked', 'Transfer-Encoding: chunked\r\nContent-Length: 3', 'Content-Length: 3\r\nTransfer-Encoding: chunked'));

const framing: fc.Arbitrary<Framing> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Framing>({ fields: [], body: '', decoded: '', ok: true }) },
  {
    weight: 3,
    arbitrary: payload.chain((p) =>
      mostly(
        good(String(p.length)),
        fc.oneof(
          bad(`+${p.length}`, `${p.length},${p.length}`, `${p.length}, ${p.length + 1}`, '-1', `0x${p.length}`, 'abc', '99999999999999999999', '', `${p.length}\r\nContent-Length: ${p.length}`, `${p.length}\r\nContent-Length: ${p.length + 1}`, `${p.length} ${p.length}`),
          fc.integer({ min: 1, max: 50 }).chain((k) => bad(String(p.length + k), String(Math.max(0, p.length - k)))),
        ),
      ).map((cl) => ({ fields: [`Content-Length: ${cl.text}`], body: p, decoded: p, ok: cl.ok })),
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(te, fc.array(chunk, { maxLength: 3 }), lastChunk).map(([t, chunks, last]) => ({
      fields: [t.text],
      body: chunks.map((c) => c.text).join('') + last.text,
      decoded: chunks.map((c) => c.data).join(''),
      ok: t.ok && last.ok && chunks.every((c) => c.ok),
    })),
  },
);

interface Request {
  text: string;
  method: string;
  /** Well-formed: the gateway must proxy it unchanged. */
  ok: boolean;
  /** The target the upstream must see, when ok. */
  target: string;
  body: string;
}

const request: fc.Arbitrary<Request> = fc
  .record({ method, target, version, eol, host, headers: fc.array(header, { maxLength: 4 }), framing, headerFirst: fc.boolean() })
  .map(({ method: m, target: t, version: v, eol: e, host: h, headers, framing: f, headerFirst }) => {
    const lines = [h.text, ...headers.map((x) => x.text), ...f.fields].filter((l) => l !== '');
    if (headerFirst) lines.reverse();
    const head = [`${m.text} ${t.text} ${v.text}`, ...lines].join(e.text) + e.text + e.text;
    // A body on GET or HEAD is legal but means nothing: no expectation, only the invariants.
    const bodyOk = f.fields.length === 0 || METHODS_WITH_BODY.includes(m.text);
    const ok = m.ok && t.ok && v.ok && e.ok && h.ok && headers.every((x) => x.ok) && f.ok && bodyOk;
    return { text: head + f.body, method: m.text, ok, target: TARGETS[t.text] ?? t.text, body: f.decoded };
  });

/**
 * Known and left out: an Upgrade request with bytes after it on the same connection (they become the
 * upgraded stream's first bytes; when the app refuses the upgrade with a plain response, the client
 * may see nothing). An Upgrade pipelined behind another request is generated: it waits for the
 * response before it (server.ts afterEarlier). See test/fuzz/README.md.
 */
const upgradeNotLast = (requests: Request[]): boolean => requests.slice(0, -1).some((r) => /\r?\nUpgrade:/i.test(r.text));
const exchange = fc
  .record({ requests: fc.array(request, { minLength: 1, maxLength: 3 }), halfClose: fc.boolean(), split: fc.boolean() })
  .filter(({ requests }) => !upgradeNotLast(requests));

// ---------------------------------------------------------------------------------------------
// The client: raw bytes out, responses in, until all came, the gateway closed, or it went idle

async function send(port: number, data: Buffer, opts: { halfClose: boolean; split: boolean }): Promise<{ bytes: Buffer; closed: boolean }> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const chunks: Buffer[] = [];
  let closed = false;
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  return new Promise((resolve) => {
    let idle: NodeJS.Timeout;
    const finish = () => {
      clearTimeout(idle);
      clearTimeout(cap);
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed });
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(finish, IDLE_MS);
    };
    const cap = setTimeout(finish, 10_000);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
      done.check();
    });
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    const done = {
      check: () => undefined as void,
    };
    done.check = () => {
      const n = (data as Buffer & { requests?: number }).requests ?? 1;
      const r = parseResponses(Buffer.concat(chunks), (data as Buffer & { methods?: string[] }).methods ?? [], false);
      if (r.error === undefined && r.rest === 0 && r.responses.length >= n) finish();
    };
    arm();
    if (opts.split && data.length > 1) {
      // Two writes with a pause between: the head or body arrives in parts, as over a slow link.
      const cut = Math.floor(data.length / 2);
      socket.write(data.subarray(0, cut));
      setTimeout(() => {
        socket.write(data.subarray(cut));
        if (opts.halfClose) socket.end();
      }, 5);
    } else {
      socket.write(data);
      if (opts.halfClose) socket.end();
    }
  });
}

// ---------------------------------------------------------------------------------------------

let tmp: ReturnType<typeof tempDir>;
let upstream: Upstream<net.Server>;
let gw: RunningGateway;

beforeAll(async () => {
  tmp = tempDir('gw-fuzz-');
  upstream = await rawUpstream(join(tmp.dir, 'app.sock'), onUpstreamConnection);
  // One process, so that a crash shows as its exit (where the CLI has worker processes at all).
  const { stdout, stderr } = await runCli(['--help']);
  const workers = `${stdout}${stderr}`.includes('--workers') ? ['--workers', '0'] : [];
  gw = await startGateway(['--upstream', upstream.socketPath, '--access-log', 'off', ...workers, '--hold-timeout', '0', '--client-header-timeout', '3s', '--client-body-timeout', '3s']);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  tmp?.cleanup();
});

describe('the request path under fuzzing', () => {
  it(
    'answers well-formed, stays up, and passes on exactly the requests it answers with the app’s response',
    async () => {
      let cases = 0;
      await fc.assert(
        fc.asyncProperty(exchange, async ({ requests, halfClose, split }) => {
          cases++;
          const from = received.length;
          const data = Object.assign(Buffer.from(requests.map((r) => r.text).join(''), 'latin1'), { requests: requests.length, methods: requests.map((r) => r.method) });
          const { bytes, closed } = await send(gw.port, data, { halfClose, split });
          // Whatever the gateway still had on its way upstream arrives.
          await new Promise((r) => setTimeout(r, 20));
          const context = `sent ${JSON.stringify(data.toString('latin1').slice(0, 3000))}\ngot ${JSON.stringify(bytes.toString('latin1').slice(0, 3000))}`;

          // The gateway is up and logged nothing uncaught.
          expect(gw.proc.exitCode, gw.output().slice(-3000)).toBeNull();
          expect(gw.proc.signalCode).toBeNull();
          expect(gw.output()).not.toMatch(/uncaught|"level":60/i);

          // Well-formed responses, at most one per request, nothing after them (unless cut by our idle timeout).
          const parsed = parseResponses(bytes, requests.map((r) => r.method), closed);
          expect(parsed.error, context).toBeUndefined();
          if (closed) expect(parsed.rest, context).toBe(0);

          // The upstream read every byte strictly.
          expect(violations, context).toEqual([]);

          // The requests that reached the upstream are exactly those answered with its response.
          const reached = received.slice(from);
          const answered = parsed.responses.map((r) => field(r.fields, 'x-upstream-id'));
          const ids = answered.filter((id): id is string => id !== undefined).map(Number);
          expect(new Set(ids).size, context).toBe(ids.length);
          expect(reached.map((r) => r.id).sort((a, b) => a - b), context).toEqual([...ids].sort((a, b) => a - b));
          for (const [i, r] of parsed.responses.entries()) {
            if (answered[i] !== undefined) expect(r.status, context).toBe(200);
            else expect(r.status, context).toBeGreaterThanOrEqual(400);
          }

          // Well-formed requests (all of them, up to here) are proxied unchanged.
          for (const [i, req] of requests.entries()) {
            if (!requests.slice(0, i + 1).every((r) => r.ok)) break;
            const res = parsed.responses[i];
            expect(res, `request ${i + 1} unanswered\n${context}`).toBeDefined();
            const id = field(res?.fields ?? [], 'x-upstream-id');
            expect(id, `request ${i + 1} answered ${res?.status} by the gateway\n${context}`).toBeDefined();
            const seen = reached.find((r) => r.id === Number(id));
            expect(seen?.method, context).toBe(req.method);
            expect(seen?.target, context).toBe(req.target);
            expect(seen?.body.toString('latin1'), context).toBe(req.body);
          }
        }),
        fuzzParams({ runs: RUNS, seconds: SECONDS }),
      );
      // How far the run got, for the README's numbers and for a reader of CI logs.
      process.stdout.write(`request-path fuzz: ${cases} cases, ${received.length} requests reached the upstream\n`);
    },
    fuzzTimeout(SECONDS),
  );
});

/**
 * Strict HTTP/1.1 message parsers for test/fuzz/request-path.fuzz.test.ts: stricter than Node's
 * llhttp and undici on purpose (RFC 9112 without the leniencies), so that anything odd the gateway
 * lets through shows up.
 *
 * - parseStrictRequest: what the upstream receives. One request at a time from a connection's bytes;
 *   any deviation (obs-fold, bare LF or CR, a space before a colon, Content-Length and
 *   Transfer-Encoding together, two Content-Lengths, a coding other than exactly `chunked`, a
 *   chunk size that is not plain hex, a missing or second Host) is an error with a reason.
 * - parseResponses: what the client receives. Responses in order, framed by their status, the
 *   request's method, Transfer-Encoding, Content-Length or the close, as RFC 9112 6.3 says.
 */

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value: VCHAR, obs-text, SP and HTAB (RFC 9110 5.5); no CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const MAX_HEAD = 64 * 1024;

export type Field = [name: string, value: string];

export interface StrictRequest {
  method: string;
  target: string;
  fields: Field[];
  body: Buffer;
}

export type Parsed<T> = { kind: 'done'; value: T; used: number } | { kind: 'incomplete' } | { kind: 'error'; reason: string };

/** Splits a head (without its blank line) into lines; a bare CR or LF anywhere is an error. */
function headLines(head: string): string[] | string {
  const lines = head.split('\r\n');
  for (const l of lines) if (l.includes('\r') || l.includes('\n')) return `bare CR or LF in ${JSON.stringify(l)}`;
  return lines;
}

function parseFields(lines: string[]): Field[] | string {
  const fields: Field[] = [];
  for (const l of lines) {
    if (l.startsWith(' ') || l.startsWith('\t')) return `obs-fold or leading whitespace: ${JSON.stringify(l)}`;
    const colon = l.indexOf(':');
    if (colon <= 0) return `field without a name or colon: ${JSON.stringify(l)}`;
    const name = l.slice(0, colon);
    if (!TOKEN.test(name)) return `field name is not a token: ${JSON.stringify(name)}`;
    const value = l.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) return `bad field value: ${JSON.stringify(l)}`;
    fields.push([name, value]);
  }
  return fields;
}

const all = (fields: Field[], name: string): string[] => fields.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

/** Reads a chunked body from `buf` at `at`: the decoded body and where it ended. */
function parseChunked(buf: Buffer, at: number): Parsed<Buffer> {
  const parts: Buffer[] = [];
  let pos = at;
  for (;;) {
    const eol = buf.indexOf('\r\n', pos, 'latin1');
    if (eol === -1) return buf.length - pos > 4096 ? { kind: 'error', reason: 'chunk size line too long' } : { kind: 'incomplete' };
    const line = buf.toString('latin1', pos, eol);
    const m = /^([0-9a-fA-F]{1,12})((?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"[^"\\\r\n]*"))?)*)$/.exec(line);
    if (!m) return { kind: 'error', reason: `bad chunk size line ${JSON.stringify(line)}` };
    const size = parseInt(m[1] as string, 16);
    pos = eol + 2;
    if (size === 0) {
      // Trailer fields, then the blank line.
      const end = buf.indexOf('\r\n\r\n', pos - 2, 'latin1');
      if (end === -1) return { kind: 'incomplete' };
      const trailer = buf.toString('latin1', pos, end);
      if (trailer !== '') {
        const lines = headLines(trailer);
        if (typeof lines === 'string') return { kind: 'error', reason: `trailer: ${lines}` };
        const fields = parseFields(lines);
        if (typeof fields === 'string') return { kind: 'error', reason: `trailer: ${fields}` };
      }
      return { kind: 'done', value: Buffer.concat(parts), used: end + 4 - at };
    }
    if (buf.length < pos + size + 2) return { kind: 'incomplete' };
    parts.push(buf.subarray(pos, pos + size));
    if (buf[pos + size] !== 13 || buf[pos + size + 1] !== 10) return { kind: 'error', reason: 'chunk data not followed by CRLF' };
    pos += size + 2;
  }
}

/** Content-Length or chunked framing of a message whose head was `fields`; undefined: neither. */
function framing(fields: Field[]): { kind: 'length'; n: number } | { kind: 'chunked' } | { kind: 'none' } | string {
  const te = all(fields, 'transfer-encoding');
  const cl = all(fields, 'content-length');
  if (te.length > 0 && cl.length > 0) return 'both Transfer-Encoding and Content-Length';
  if (te.length > 0) return te.length === 1 && te[0] === 'chunked' ? { kind: 'chunked' } : `Transfer-Encoding other than one "chunked": ${JSON.stringify(te)}`;
  if (cl.length > 1) return `${cl.length} Content-Length fields`;
  if (cl.length === 1) return /^\d{1,15}$/.test(cl[0] as string) ? { kind: 'length', n: Number(cl[0]) } : `bad Content-Length ${JSON.stringify(cl[0])}`;
  return { kind: 'none' };
}

/** The first request in `buf`, RFC 9112 strictly; HTTP/1.1 only (what the gateway sends upstream). */
export function parseStrictRequest(buf: Buffer): Parsed<StrictRequest> {
  const end = buf.indexOf('\r\n\r\n', 0, 'latin1');
  if (end === -1) return buf.length > MAX_HEAD ? { kind: 'error', reason: 'head too large' } : { kind: 'incomplete' };
  const lines = headLines(buf.toString('latin1', 0, end));
  if (typeof lines === 'string') return { kind: 'error', reason: lines };
  const [first = '', ...rest] = lines;
  const m = /^([^ ]+) ([^ ]+) HTTP\/1\.1$/.exec(first);
  if (!m || !TOKEN.test(m[1] as string)) return { kind: 'error', reason: `bad request line ${JSON.stringify(first)}` };
  const target = m[2] as string;
  // origin-form, absolute-form, authority-form or * (RFC 9112 3.2): no controls, no spaces.
  // eslint-disable-next-line no-control-regex -- controls are what this looks for
  if (/[\x00-\x20\x7f]/.test(target)) return { kind: 'error', reason: `bad request target ${JSON.stringify(target)}` };
  const fields = parseFields(rest);
  if (typeof fields === 'string') return { kind: 'error', reason: fields };
  if (all(fields, 'host').length !== 1) return { kind: 'error', reason: `${all(fields, 'host').length} Host fields` };
  const frame = framing(fields);
  if (typeof frame === 'string') return { kind: 'error', reason: frame };
  const req = { method: m[1] as string, target, fields };
  const at = end + 4;
  if (frame.kind === 'none') return { kind: 'done', value: { ...req, body: Buffer.alloc(0) }, used: at };
  if (frame.kind === 'length') {
    if (buf.length < at + frame.n) return { kind: 'incomplete' };
    return { kind: 'done', value: { ...req, body: Buffer.from(buf.subarray(at, at + frame.n)) }, used: at + frame.n };
  }
  const body = parseChunked(buf, at);
  if (body.kind !== 'done') return body;
  return { kind: 'done', value: { ...req, body: body.value }, used: at + body.used };
}

export interface StrictResponse {
  status: number;
  fields: Field[];
  body: Buffer;
}

/**
 * Every response in `buf`; `methods[i]` is the method of the request the i-th final response
 * answers (HEAD responses have no body). 1xx responses are interim and skipped, except 101, after
 * which the bytes are not HTTP. `closed`: the peer closed, so a close-delimited body is complete.
 * Returns the final responses, and an error or the bytes left unparsed.
 */
export function parseResponses(buf: Buffer, methods: string[], closed: boolean): { responses: StrictResponse[]; error?: string; rest: number } {
  const responses: StrictResponse[] = [];
  let pos = 0;
  const fail = (error: string) => ({ responses, error, rest: buf.length - pos });
  while (pos < buf.length) {
    const end = buf.indexOf('\r\n\r\n', pos, 'latin1');
    if (end === -1) return closed ? fail(`head cut by the close: ${JSON.stringify(buf.toString('latin1', pos, pos + 200))}`) : { responses, rest: buf.length - pos };
    const lines = headLines(buf.toString('latin1', pos, end));
    if (typeof lines === 'string') return fail(lines);
    const [first = '', ...rest] = lines;
    const m = /^HTTP\/1\.1 ([1-5]\d\d) [\t\x20-\x7e\x80-\xff]*$/.exec(first);
    if (!m) return fail(`bad status line ${JSON.stringify(first)}`);
    const status = Number(m[1]);
    const fields = parseFields(rest);
    if (typeof fields === 'string') return fail(fields);
    const at = end + 4;
    if (status >= 100 && status < 200 && status !== 101) {
      pos = at;
      continue;
    }
    const method = methods[responses.length];
    if (method === undefined) {
      // Bytes after the requests the generator framed (a body its headers did not announce) are, to
      // the gateway as to nginx, the start of a next request: one error answer and a close is right.
      if (status >= 400 && /close/i.test(field(fields, 'connection') ?? '')) return { responses, rest: 0 };
      return fail(`response ${responses.length + 1} to ${methods.length} request(s)`);
    }
    if (status === 101) {
      responses.push({ status, fields, body: Buffer.alloc(0) });
      return { responses, rest: 0 };
    }
    const frame = framing(fields);
    if (typeof frame === 'string') return fail(frame);
    // An unreadable request's 400 (431, 408) cannot know it answers a HEAD: it may come with its
    // page, and then with a close, as nginx's does.
    const unparsed = (status === 400 || status === 408 || status === 431) && /close/i.test(field(fields, 'connection') ?? '') && buf.length > at;
    if ((method === 'HEAD' && !unparsed) || status === 204 || status === 304) {
      responses.push({ status, fields, body: Buffer.alloc(0) });
      pos = at;
    } else if (frame.kind === 'length') {
      if (buf.length < at + frame.n) return closed ? fail('body cut by the close') : { responses, rest: buf.length - pos };
      responses.push({ status, fields, body: buf.subarray(at, at + frame.n) });
      pos = at + frame.n;
    } else if (frame.kind === 'chunked') {
      const body = parseChunked(buf, at);
      if (body.kind === 'error') return fail(body.reason);
      if (body.kind === 'incomplete') return closed ? fail('chunked body cut by the close') : { responses, rest: buf.length - pos };
      responses.push({ status, fields, body: body.value });
      pos = at + body.used;
    } else {
      // Close-delimited (RFC 9112 6.3 item 8).
      if (!closed) return { responses, rest: buf.length - pos };
      responses.push({ status, fields, body: buf.subarray(at) });
      pos = buf.length;
    }
  }
  return { responses, rest: 0 };
}

/** The value of a field (the first of that name), case-insensitively. */
export function field(fields: Field[], name: string): string | undefined {
  return all(fields, name.toLowerCase())[0];
}

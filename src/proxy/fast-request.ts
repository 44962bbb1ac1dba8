/**
 * The request the client fast path parsed (fast-connection.ts): the fields of Node's
 * IncomingMessage that the gateway reads, for a bodiless HTTP/1.1 request.
 */
import { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Node's own rule for building `headers` from the raw fields (which duplicates are joined, which
 * dropped, Set-Cookie as a list), so both client paths see the same object. An internal method:
 * a Node without it turns the fast path off (FAST_REQUESTS) rather than guess the rule.
 */
const addHeaderLine = (IncomingMessage.prototype as unknown as { _addHeaderLine?: (field: string, value: string, dest: Record<string, string | string[]>) => void })._addHeaderLine;
export const FAST_REQUESTS = typeof addHeaderLine === 'function';

/** A parsed bodiless request: the fields of Node's IncomingMessage the gateway reads. */
export class FastRequest {
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly complete = true;
  readonly destroyed = false;
  readonly readableLength = 0;
  /** Read by IncomingMessage's _addHeaderLine: duplicates of single fields are dropped, as Node's server does here. */
  readonly joinDuplicateHeaders = false;
  /** server.ts's per-request fields (GatewayRequest). */
  client: unknown = undefined;
  location: unknown = undefined;
  readonly headers: Record<string, string | string[]> = {};

  constructor(
    readonly method: string,
    public url: string,
    readonly rawHeaders: string[],
    readonly socket: Socket,
  ) {
    const h = this.headers;
    for (let i = 0; i < rawHeaders.length; i += 2) (addHeaderLine as NonNullable<typeof addHeaderLine>).call(this, rawHeaders[i] as string, rawHeaders[i + 1] as string, h);
  }

  isPaused(): boolean {
    return false;
  }

  /** No body: 'end' and 'close' listeners (forward.ts adds them only for bodies) have nothing to wait for. */
  once(): this {
    return this;
  }
}

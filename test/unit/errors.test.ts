import { describe, expect, it } from 'vitest';
import { errorPage, GatewayError, toGatewayError } from '../../src/proxy/errors.js';

describe('one mapping from failures to typed errors', () => {
  it.each([
    ['ENOENT', 'GW_ERR_UPSTREAM_MISSING', 502],
    ['ECONNREFUSED', 'GW_ERR_UPSTREAM_REFUSED', 502],
    ['UND_ERR_CONNECT_TIMEOUT', 'GW_ERR_UPSTREAM_CONNECT_TIMEOUT', 504],
    ['UND_ERR_HEADERS_TIMEOUT', 'GW_ERR_UPSTREAM_TIMEOUT', 504],
    ['UND_ERR_SOCKET', 'GW_ERR_UPSTREAM_RESET', 502],
    ['HPE_INVALID_CONSTANT', 'GW_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['HPE_UNEXPECTED_CONTENT_LENGTH', 'GW_ERR_UPSTREAM_BAD_RESPONSE', 502],
    ['EWHATEVER', 'GW_ERR_INTERNAL', 500],
  ])('%s → %s (%d)', (errno, code, status) => {
    const cause = Object.assign(new Error('x'), { code: errno });
    const gw = toGatewayError(cause);
    expect(gw.code).toBe(code);
    expect(gw.status).toBe(status);
    expect(gw.cause).toBe(cause);
  });

  it('keeps a GatewayError as it is', () => {
    const e = new GatewayError('GW_ERR_BODY_TOO_LARGE');
    expect(toGatewayError(e)).toBe(e);
    expect(e.source).toBe('downstream');
  });

  it('renders a small page with no internals', () => {
    const page = errorPage(502).toString();
    expect(page).toContain('502 Bad Gateway');
    expect(page).not.toMatch(/ENOENT|\/tmp|Error:/);
  });
});

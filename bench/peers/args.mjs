// Shared argv parsing for the peer proxies: --listen HOST:PORT --upstream /path/to.sock
export function parsePeerArgs(argv) {
  const get = (flag) => {
    const i = argv.indexOf(flag);
    if (i < 0 || !argv[i + 1]) throw new Error(`missing ${flag}`);
    return argv[i + 1];
  };
  const listen = get('--listen');
  const colon = listen.lastIndexOf(':');
  return { host: listen.slice(0, colon), port: Number(listen.slice(colon + 1)), socketPath: get('--upstream') };
}

// Hop-by-hop headers (RFC 9110 7.6.1) must not be forwarded; undici also refuses most of them.
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'proxy-authenticate', 'proxy-authorization',
]);

#!/usr/bin/env node
/**
 * The command line: `gateway run`, `gateway check`. Parses arguments, wires signals, and is the
 * only place that exits the process.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRaw, parseFlags } from './config/load.js';
import { CONFIG_KEYS, SCHEMA, flagOf } from './config/schema.js';
import { formatProblem, validateConfig, type Problem } from './config/validate.js';
import { Gateway } from './gateway.js';
import { createLogger } from './log/logger.js';
import { sendCommand } from './control/client.js';
import { importNginxConfig, matchLocation, type LocationSpec } from '../nginx-compat/index.js';
import type { StaticLocation, StaticRouter } from './proxy/static.js';

function usage(): string {
  const lines = [
    'usage: gateway run [--nginx-config FILE] [--config FILE] [options]',
    '       gateway check [--nginx-config FILE [--strict]] [--config FILE] [options]   (like nginx -t)',
    '       gateway nginx-import FILE [--strict]   the gateway config an nginx.conf maps to, and what differs',
    '       gateway status|start|stop|restart [--control PATH]   the app server, through a running gateway',
    '       gateway pause|resume [--control PATH]                hold new requests / let them go',
    '', 'options (each also a key of the JSON config file):'];
  for (const key of CONFIG_KEYS) {
    const spec = SCHEMA[key];
    lines.push(`  ${flagOf(key).padEnd(30)} ${spec.doc} (default: ${JSON.stringify(spec.default)}; key "${key}")`);
  }
  return lines.join('\n') + '\n';
}

/** `gateway pause|resume|status [--control PATH]`: one command to the running gateway. */
async function control(command: string, argv: string[]): Promise<number> {
  const i = argv.indexOf('--control');
  const path = i === -1 ? (SCHEMA.control.default as string) : argv[i + 1];
  if (path === undefined) {
    process.stderr.write('gateway: --control needs a path\n');
    return 2;
  }
  try {
    // A restart or stop may walk a whole ladder (QUIT 30 s, TERM 11 s...): wait long enough.
    const reply = await sendCommand(path, command, {}, 15 * 60_000);
    process.stdout.write(JSON.stringify(reply, null, 2) + '\n');
    if (reply.ok !== true) process.stderr.write(`gateway: ${command} failed: ${String(reply.error)}\n`);
    return reply.ok === true ? 0 : 1;
  } catch (err) {
    process.stderr.write(`gateway: ${(err as Error).message}\n`);
    return 1;
  }
}

function configFrom(argv: string[]): { config?: ReturnType<typeof validateConfig>['config']; problems: Problem[]; nginxFailed?: boolean; nginx: { statics?: StaticRouter; errorPages?: Map<number, Buffer> } } {
  const args = parseFlags(argv);
  let fromNginx: Record<string, unknown> = {};
  let nginx: { statics?: StaticRouter; errorPages?: Map<number, Buffer> } = {};
  if (args.nginxConfig !== undefined) {
    const imported = readNginx(args.nginxConfig, args.strict === true);
    if (!imported) return { problems: [], nginxFailed: true, nginx };
    const { config, ...rest } = imported;
    fromNginx = config;
    nginx = rest;
  }
  const loaded = loadRaw(args, fromNginx);
  const res = validateConfig(loaded.raw);
  return { config: res.config, problems: [...loaded.problems, ...res.problems], nginx };
}

/**
 * An nginx.conf through nginx-compat: warnings and errors on stderr in nginx's words; the gateway
 * keys it maps to, or undefined when it has errors (as `nginx -t` fails).
 */
function readNginx(file: string, strict: boolean): { config: Record<string, unknown>; statics?: StaticRouter; errorPages?: Map<number, Buffer> } | undefined {
  const r = importNginxConfig(file, { strict });
  for (const w of r.warnings) process.stderr.write(`gateway: [warn] ${w.message}\n`);
  for (const e of r.errors) process.stderr.write(`gateway: [emerg] ${e.message}\n`);
  if (r.errors.length > 0) {
    process.stderr.write(`gateway: configuration file ${file} test failed\n`);
    return undefined;
  }
  // Static files (root, try_files, expires, add_header, gzip_static) are served, and the server's
  // error_page files answer the errors the gateway makes (502, 503, 504...); return, rewrite,
  // location-level error_page and gzip of responses are read but not applied yet: say so.
  const pending = [...r.locations].filter((l) => l.rewrite.length > 0 || l.errorPage.length > 0 || l.gzip.enabled);
  if (r.server && (r.server.rewrite.length > 0 || r.server.gzip.enabled)) pending.push(r.server);
  if (pending.length > 0) {
    process.stderr.write(`gateway: [warn] ${pending.length} block(s) use rewrite, a location's error_page or gzip: read, but not applied yet\n`);
  }
  const errorPages = new Map<number, Buffer>();
  for (const ep of r.server?.errorPage ?? []) {
    if (!ep.uri.startsWith('/') || r.server?.root == null) continue;
    try {
      const page = readFileSync(join(r.server.root, ep.uri));
      for (const code of ep.codes) errorPages.set(code, page);
    } catch (err) {
      process.stderr.write(`gateway: [warn] error_page ${ep.codes.join(' ')} ${ep.uri}: ${(err as Error).message}; the built-in page is used\n`);
    }
  }
  const adapt = (l: LocationSpec): StaticLocation => ({
    root: l.root,
    tryFiles: l.tryFiles,
    proxy: l.proxyPass !== null,
    expires: l.expires.kind === 'after' ? { kind: 'after', seconds: l.expires.seconds } : l.expires,
    headers: l.addHeader,
    gzipStatic: l.gzipStatic !== 'off',
    // A server-level `return` runs in nginx's rewrite phase, before any location is chosen.
    ret: r.server?.return ?? l.return,
  });
  const statics = [r.server, ...r.locations].some((l) => l && (l.root !== null || l.tryFiles || l.return))
    ? (path: string) => {
        const loc = matchLocation(r.locations, path) ?? r.server ?? undefined;
        return loc ? adapt(loc) : undefined;
      }
    : undefined;
  return { config: r.config, ...(statics ? { statics } : {}), ...(errorPages.size > 0 ? { errorPages } : {}) };
}

/** `gateway nginx-import FILE [--strict]`: the equivalent gateway config as JSON, warnings on stderr. */
function nginxImport(argv: string[]): number {
  const file = argv.find((a) => !a.startsWith('--'));
  if (file === undefined) {
    process.stderr.write('gateway: usage: gateway nginx-import /etc/nginx/nginx.conf [--strict]\n');
    return 2;
  }
  const imported = readNginx(file, argv.includes('--strict'));
  if (!imported) return 1;
  const raw = imported.config;
  const res = validateConfig(raw);
  for (const p of res.problems) process.stderr.write(`gateway: config: ${formatProblem(p)}\n`);
  process.stdout.write(JSON.stringify(raw, null, 2) + '\n');
  return res.problems.length > 0 ? 1 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(usage());
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === 'version') {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`web-server-gateway ${pkg.version}\n`);
    return 0;
  }
  if (['pause', 'resume', 'status', 'start', 'stop', 'restart'].includes(command)) return control(command, rest);
  if (command === 'nginx-import') return nginxImport(rest);
  if (command !== 'run' && command !== 'check') {
    process.stderr.write(`gateway: unknown command "${command}"; use run, check, nginx-import, status, start, stop, restart, pause or resume\n${usage()}`);
    return 2;
  }
  const { config, problems, nginxFailed, nginx } = configFrom(rest);
  if (nginxFailed) return 2;
  if (problems.length > 0 || !config) {
    for (const p of problems) process.stderr.write(`gateway: config: ${formatProblem(p)}\n`);
    process.stderr.write(`gateway: ${problems.length} problem${problems.length === 1 ? '' : 's'} in the configuration\n`);
    return 2;
  }
  if (command === 'check') {
    const nginx = rest.indexOf('--nginx-config');
    if (nginx !== -1) process.stdout.write(`gateway: the configuration file ${rest[nginx + 1]} syntax is ok\ngateway: configuration file ${rest[nginx + 1]} test is successful\n`);
    else process.stdout.write('gateway: configuration is valid\n');
    return 0;
  }

  const log = createLogger(config.logLevel);
  let gateway: Gateway;
  try {
    gateway = new Gateway(config, log, nginx);
  } catch (err) {
    process.stderr.write(`gateway: ${(err as Error).message}\n`);
    return 1;
  }
  // Signals are wired before start: the app server may take long to boot, and a stop meanwhile
  // must stop it too (the default handlers would exit and leave it orphaned).
  let stopping = false;
  let settle: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (settle = resolve));
  const stop = (graceful: boolean, signal: string) => {
    if (stopping && graceful) return;
    stopping = true;
    log.info({ signal }, graceful ? 'graceful stop' : 'fast stop');
    gateway.stop(graceful).then(
      () => settle(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        settle(1);
      },
    );
  };
  process.on('SIGQUIT', () => stop(true, 'SIGQUIT'));
  process.on('SIGTERM', () => stop(true, 'SIGTERM'));
  process.on('SIGINT', () => stop(false, 'SIGINT'));
  process.on('SIGUSR1', () => gateway.reopenLogs());

  try {
    await gateway.start();
  } catch (err) {
    if (stopping) return done;
    process.stderr.write(`gateway: ${(err as Error).message}\n`);
    await gateway.stop(false).catch(() => undefined);
    return 1;
  }
  return done;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`gateway: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);

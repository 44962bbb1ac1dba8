#!/usr/bin/env node
/**
 * The command line: `gateway run`, `gateway check`. Parses arguments, wires signals, and is the
 * only place that exits the process.
 */
import { readFileSync } from 'node:fs';
import { CONFIG_KEYS, SCHEMA, flagOf } from './config/schema.js';
import { formatProblem, validateConfig } from './config/validate.js';
import { configFrom } from './config/resolve.js';
import { Gateway } from './gateway.js';
import { createLogger, type Logger } from './log/logger.js';
import { sendCommand } from './control/client.js';
import { readNginx } from './nginx-site.js';
import { takeInherited } from './upgrade.js';
import { runWorker } from './worker-main.js';
import { WORKER_ENV, type WorkerBoot } from './workers.js';

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

const toStderr = (line: string) => process.stderr.write(`gateway: ${line}\n`);

/** `gateway nginx-import FILE [--strict]`: the equivalent gateway config as JSON, warnings on stderr. */
function nginxImport(argv: string[]): number {
  const file = argv.find((a) => !a.startsWith('--'));
  if (file === undefined) {
    process.stderr.write('gateway: usage: gateway nginx-import /etc/nginx/nginx.conf [--strict]\n');
    return 2;
  }
  const imported = readNginx(file, argv.includes('--strict'), toStderr);
  if (!imported) return 1;
  const raw = imported.config;
  const res = validateConfig(raw);
  for (const p of res.problems) process.stderr.write(`gateway: config: ${formatProblem(p)}\n`);
  process.stdout.write(JSON.stringify(raw, null, 2) + '\n');
  return res.problems.length > 0 ? 1 : 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // A worker process started by the primary (workers.ts): the proxy alone.
  const worker = process.env[WORKER_ENV];
  if (worker !== undefined && command === 'run') {
    delete process.env[WORKER_ENV];
    return runWorker(JSON.parse(worker) as WorkerBoot, rest);
  }
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
  const { config, problems, nginxFailed, nginx } = configFrom(rest, toStderr);
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
    gateway = new Gateway(config, log, nginx, takeInherited());
  } catch (err) {
    process.stderr.write(`gateway: ${(err as Error).message}\n`);
    return 1;
  }
  // Signals are wired before start: the app server may take long to boot, and a stop meanwhile
  // must stop it too (the default handlers would exit and leave it orphaned).
  let stopping = false;
  let settle: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (settle = resolve));
  let cutting = false;
  const stop = (graceful: boolean, signal: string) => {
    // A fast stop may cut short a graceful one, once; nothing else starts a second stop.
    if ((stopping && graceful) || cutting) return;
    stopping = true;
    cutting = !graceful;
    log.info({ signal }, graceful ? 'graceful stop' : 'fast stop');
    gateway.stop(graceful).then(
      () => settle(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        settle(1);
      },
    );
  };
  // nginx's signals: QUIT graceful, TERM and INT fast, HUP reload, USR1 reopen logs, USR2 upgrade.
  process.on('SIGQUIT', () => stop(true, 'SIGQUIT'));
  process.on('SIGTERM', () => stop(false, 'SIGTERM'));
  process.on('SIGINT', () => stop(false, 'SIGINT'));
  process.on('SIGUSR1', () => gateway.reopenLogs());
  process.on('SIGUSR2', () => {
    if (stopping) return;
    void gateway.upgrade().then((handedOver) => {
      if (handedOver) stop(true, 'SIGUSR2');
    });
  });
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(() => (stopping ? undefined : reload(gateway, rest, log)));
  });

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

/**
 * HUP: read the configuration again the way it was given (flags, --config, --nginx-config) and
 * apply it; a configuration with problems is rejected and the running one kept, as nginx does.
 */
async function reload(gateway: Gateway, argv: string[], log: Logger): Promise<void> {
  const nginxLines: string[] = [];
  const { config, problems, nginxFailed, nginx } = configFrom(argv, (line) => nginxLines.push(line));
  if (nginxFailed || problems.length > 0 || !config) {
    log.error({ problems: problems.map(formatProblem), nginx: nginxLines }, 'reload rejected: the new configuration has errors; the running one is kept');
    return;
  }
  if (nginxLines.length > 0) log.warn({ nginx: nginxLines }, 'nginx.conf read with warnings');
  try {
    const { applied, kept } = await gateway.reload(config, nginx);
    log.info({ applied }, 'configuration reloaded');
    if (kept.length > 0) log.warn({ keys: kept }, 'changed settings kept at their running values: they take a restart (USR2 upgrades the gateway in place)');
  } catch (err) {
    log.error({ reason: (err as Error).message }, 'reload rejected; the running configuration is kept');
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`gateway: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);

/**
 * `gateway check` and the flag validation `gateway run` shares with it: every bad key reported at
 * once, each with its key, its value and a fix; a bad file named; nothing started on a bad config.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/gateway.js';
import { tempDir } from '../helpers/upstream.js';

/** The `gateway: config: KEY: VALUE: ...` line for a key; fails, showing stderr, when there is none. */
function problemLine(stderr: string, key: string): string {
  const line = stderr.split('\n').find((l) => l.startsWith(`gateway: config: ${key}: `));
  expect(line, `no problem line for "${key}" in:\n${stderr}`).toBeDefined();
  return line as string;
}

/** The problem lines only, without the summary line. */
function problemLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('gateway: config: '));
}

describe('gateway check', () => {
  let tmp: ReturnType<typeof tempDir>;
  const file = (name: string, content: string): string => {
    const path = join(tmp.dir, name);
    writeFileSync(path, content);
    return path;
  };

  beforeAll(() => {
    tmp = tempDir('gw-check-');
  });
  afterAll(() => tmp?.cleanup());

  it('reports every bad key of a broken config file with its value and a fix, and exits non-zero', async () => {
    const path = file(
      'broken.json',
      JSON.stringify(
        {
          upstreem: '/tmp/web_server.sock',
          proxyReadTimeout: '60 seconds',
          clientMaxBodySize: '50 megs',
          listen: ['0.0.0.0:80', 'localhost:http'],
          upstream: 'tmp/web_server.sock',
          trustedProxies: ['10.0.0.0/8', '10.0.0.0/33'],
          // Valid keys among the bad ones are not reported.
          logLevel: 'warn',
          keepaliveTimeout: '75s',
        },
        null,
        2,
      ),
    );
    const r = await runCli(['check', '--config', path]);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.stdout).not.toContain('valid');

    // Unknown key with a near-miss name: the right key and its flag.
    const upstreem = problemLine(r.stderr, 'upstreem');
    expect(upstreem).toContain('"/tmp/web_server.sock"');
    expect(upstreem).toContain('unknown key');
    expect(upstreem).toContain('did you mean "upstream" (--upstream)?');

    const duration = problemLine(r.stderr, 'proxyReadTimeout');
    expect(duration).toContain('"60 seconds"');
    expect(duration).toContain('is not a duration');
    expect(duration).toMatch(/60s.*500ms/);

    const size = problemLine(r.stderr, 'clientMaxBodySize');
    expect(size).toContain('"50 megs"');
    expect(size).toContain('is not a size');
    expect(size).toMatch(/8k.*50m/);

    // The one bad listener of the list is named, not just the list.
    const listen = problemLine(r.stderr, 'listen');
    expect(listen).toContain('"localhost:http" is not HOST:PORT');
    expect(listen).toMatch(/write e\.g\. 0\.0\.0\.0:80/);

    const upstream = problemLine(r.stderr, 'upstream');
    expect(upstream).toContain('"tmp/web_server.sock"');
    expect(upstream).toContain('must be an absolute path');
    expect(upstream).toContain('"/tmp/web_server.sock"');

    const cidr = problemLine(r.stderr, 'trustedProxies');
    expect(cidr).toContain('"10.0.0.0/33" is not an address or CIDR');
    expect(cidr).toContain('10.0.0.0/8');

    expect(problemLines(r.stderr)).toHaveLength(6);
    expect(r.stderr).toContain('gateway: 6 problems in the configuration');
    expect(r.stderr).not.toMatch(/logLevel|keepaliveTimeout/);
  });

  it('points nginx-style key names (client_max_body_size, keepalive_timeout) at ours', async () => {
    const path = file('nginx-names.json', JSON.stringify({ client_max_body_size: '50m', keepalive_timeout: '65s' }));
    const r = await runCli(['check', '--config', path]);
    expect(r.code, r.stderr).not.toBe(0);
    expect(problemLine(r.stderr, 'client_max_body_size')).toContain('did you mean "clientMaxBodySize" (--client-max-body-size)?');
    expect(problemLine(r.stderr, 'keepalive_timeout')).toContain('did you mean "keepaliveTimeout" (--keepalive-timeout)?');
  });

  // Regression: validation asked `key in SCHEMA`, which is also true for Object.prototype's names,
  // so these keys (and flags such as --to-string) passed `check` silently.
  it('rejects keys that are names of Object.prototype (constructor, toString, __proto__) as unknown', async () => {
    const path = file('proto.json', '{"constructor": 1, "toString": "x", "__proto__": {"listen": ["0.0.0.0:80"]}}');
    const r = await runCli(['check', '--config', path]);
    expect(r.code, r.stderr).not.toBe(0);
    for (const key of ['constructor', 'toString', '__proto__']) expect(problemLine(r.stderr, key)).toContain('unknown key');
    const flag = await runCli(['check', '--to-string', '5']);
    expect(flag.code, flag.stderr).not.toBe(0);
    expect(problemLine(flag.stderr, 'toString')).toContain('"5": unknown key');
  });

  it('accepts a valid config: exit 0, nothing on stderr', async () => {
    const path = file(
      'valid.json',
      JSON.stringify({
        listen: ['0.0.0.0:80', '[::]:80', '8080'],
        upstream: '/tmp/web_server.sock',
        admin: null,
        accessLog: 'off',
        accessLogFormat: 'json',
        logLevel: 'warn',
        user: 'nobody',
        trustedProxies: ['10.0.0.0/8', '192.168.1.7', 'fd00::/8'],
        forwardedForUntrusted: 'append',
        clientMaxBodySize: '50m',
        maxHeaderSize: '32k',
        maxHeaderCount: 100,
        underscoresInHeaders: true,
        clientHeaderTimeout: '60s',
        clientBodyTimeout: 60,
        sendTimeout: '1m',
        keepaliveTimeout: '65s',
        proxyConnectTimeout: '500ms',
        proxyReadTimeout: '60s',
        proxySendTimeout: '60s',
        upstreamKeepaliveTimeout: '4s',
        upstreamConnections: 128,
        shutdownTimeout: '30s',
      }),
    );
    const r = await runCli(['check', '--config', path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('gateway: configuration is valid\n');
  });

  it('names a malformed JSON file and what is wrong with it', async () => {
    const path = file('malformed.json', '{"listen": ["0.0.0.0:80",\n');
    const r = await runCli(['check', '--config', path]);
    expect(r.code, r.stderr).not.toBe(0);
    const line = problemLine(r.stderr, 'config');
    expect(line).toContain(JSON.stringify(path));
    expect(line).toMatch(/JSON/);
    expect(line).toContain('give a readable JSON file');
  });

  it('names a config file holding JSON that is not an object', async () => {
    const path = file('array.json', '[{"listen": ["0.0.0.0:80"]}]');
    const r = await runCli(['check', '--config', path]);
    expect(r.code, r.stderr).not.toBe(0);
    expect(problemLine(r.stderr, 'config')).toContain(`${JSON.stringify(path)}: must hold a JSON object`);
  });

  it('names a missing config file and a directory given as one', async () => {
    const missing = join(tmp.dir, 'missing.json');
    const r = await runCli(['check', '--config', missing]);
    expect(r.code, r.stderr).not.toBe(0);
    const line = problemLine(r.stderr, 'config');
    expect(line).toContain(JSON.stringify(missing));
    expect(line).toContain('ENOENT');

    const dir = join(tmp.dir, 'conf.d');
    mkdirSync(dir);
    const d = await runCli(['check', '--config', dir]);
    expect(d.code, d.stderr).not.toBe(0);
    expect(problemLine(d.stderr, 'config')).toContain(JSON.stringify(dir));
  });

  it('names a config file it may not read', async () => {
    const path = file('secret.json', '{}');
    chmodSync(path, 0o000);
    // Root reads any file: check as nobody then (the temp dir opened for it to reach the file).
    let ids: { uid: number; gid: number } | undefined;
    if (process.getuid?.() === 0) {
      const [, , uid, gid] = execFileSync('getent', ['passwd', 'nobody'], { encoding: 'utf8' }).trim().split(':');
      ids = { uid: Number(uid), gid: Number(gid) };
      chmodSync(tmp.dir, 0o755);
    }
    const r = await runCli(['check', '--config', path], ids ?? {});
    expect(r.code, r.stderr).not.toBe(0);
    const line = problemLine(r.stderr, 'config');
    expect(line).toContain(JSON.stringify(path));
    expect(line).toContain('EACCES');
  });
});

describe('gateway run with bad flags', () => {
  it('reports every bad flag with its value and a fix, and exits without starting', async () => {
    const started = performance.now();
    const r = await runCli([
      'run',
      '--admin',
      'null',
      '--upstreem',
      '/tmp/web_server.sock',
      '--proxy-read-timeout',
      '5y',
      '--client-max-body-size',
      '1t',
      '--listen',
      '80x',
      '--upstream',
      'rel.sock',
      '--trusted-proxies',
      '1.2.3.4/40',
      'stray',
      '--log-level',
    ]);
    expect(r.code, r.stderr).not.toBe(0);
    // Nothing started: the structured log (created only once the config is valid) never wrote.
    expect(r.stdout).toBe('');
    expect(performance.now() - started).toBeLessThan(5000);

    expect(problemLine(r.stderr, 'upstreem')).toContain('"/tmp/web_server.sock": unknown key; did you mean "upstream" (--upstream)?');
    const duration = problemLine(r.stderr, 'proxyReadTimeout');
    expect(duration).toContain('"5y": is not a duration');
    expect(duration).toMatch(/60s.*500ms/);
    const size = problemLine(r.stderr, 'clientMaxBodySize');
    expect(size).toContain('"1t": is not a size');
    expect(size).toMatch(/8k.*50m/);
    expect(problemLine(r.stderr, 'listen')).toMatch(/"80x" is not HOST:PORT; write e\.g\. 0\.0\.0\.0:80/);
    expect(problemLine(r.stderr, 'upstream')).toContain('"rel.sock": must be an absolute path; write the full path');
    expect(problemLine(r.stderr, 'trustedProxies')).toContain('"1.2.3.4/40" is not an address or CIDR; write e.g. 10.0.0.0/8');
    expect(problemLine(r.stderr, 'stray')).toContain('unexpected argument; options are written --name value');
    expect(problemLine(r.stderr, 'logLevel')).toContain('--log-level needs a value; write --log-level VALUE');
    expect(problemLines(r.stderr)).toHaveLength(8);
    expect(r.stderr).toContain('gateway: 8 problems in the configuration');
  });
});

/**
 * The nginx.conf an operator already has, through the CLI: `gateway nginx-import` prints the
 * gateway config it maps to, `gateway check --nginx-config` answers like `nginx -t`, and `gateway
 * run --nginx-config` serves with its limits.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, startGateway, type RunningGateway } from '../helpers/gateway.js';
import { httpUpstream, tempDir, type Upstream } from '../helpers/upstream.js';

const FIXTURES = fileURLToPath(new URL('../../nginx-compat/fixtures/', import.meta.url));

describe('nginx.conf on the command line', () => {
  const tmp = tempDir();
  let gw: RunningGateway | undefined;
  let app: Upstream | undefined;
  afterAll(async () => {
    await gw?.stop();
    await app?.close();
    tmp.cleanup();
  });

  it('nginx-import prints the gateway config of the hosts\' default nginx.conf, and what differs', async () => {
    const r = await runCli(['nginx-import', join(FIXTURES, 'cloud66/nginx.conf')]);
    expect(r.code, r.stderr).toBe(0);
    const expected = JSON.parse(readFileSync(join(FIXTURES, 'cloud66/expected.json'), 'utf8')) as { config: Record<string, unknown> };
    expect(JSON.parse(r.stdout)).toEqual(expected.config);
    expect(r.stderr).toMatch(/\[warn\] "worker_connections" is ignored: .* in .*nginx\.conf:10/);
  });

  it('check --nginx-config answers like nginx -t, for a good file and a broken one', async () => {
    const good = await runCli(['check', '--nginx-config', join(FIXTURES, 'cloud66/nginx.conf')]);
    expect(good.code, good.stderr).toBe(0);
    expect(good.stdout).toMatch(/syntax is ok\n.*test is successful/);
    const badFile = join(FIXTURES, 'broken/unexpected-brace/nginx.conf');
    const bad = await runCli(['check', '--nginx-config', badFile]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`[emerg] unexpected "}" in ${badFile}:5`);
    expect(bad.stderr).toMatch(/test failed/);
  });

  it('run --nginx-config serves through its upstream with its limits; flags still win', async () => {
    app = await httpUpstream(join(tmp.dir, 'web_server.sock'), (req, res) => {
      req.resume();
      req.on('end', () => res.end('from the app'));
    });
    const conf = join(tmp.dir, 'nginx.conf');
    writeFileSync(
      conf,
      `events { worker_connections 1024; }
http {
  upstream app_server { server unix:${app.socketPath} fail_timeout=0; }
  server {
    listen 80;
    client_max_body_size 1k;
    location / { proxy_pass http://app_server; }
  }
}
`,
    );
    // startGateway's --listen 127.0.0.1:0 overrides the file's listen 80, as any flag does.
    gw = await startGateway(['--nginx-config', conf, '--access-log', 'off']);
    const ok = await request(`${gw.url}/`);
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.text()).toBe('from the app');
    const big = await request(`${gw.url}/upload`, { method: 'POST', body: 'x'.repeat(2048) });
    expect(big.statusCode).toBe(413);
    await big.body.dump();
  });
});

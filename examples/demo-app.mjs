#!/usr/bin/env node
// A small app server that keeps the host's conventions exactly, so the gateway can be tried with no
// Ruby: it binds a Unix socket (default /tmp/web_server.sock), writes its PID file (default
// /tmp/web_server.pid), restarts on USR2 the way Puma does and stops gracefully on TERM/QUIT
// (INT: at once).
//
// Like Puma's hot restart, USR2 keeps the PID and the listening socket: the master process owns the
// socket (cluster, SCHED_NONE: workers accept directly on the shared fd), starts a new worker, and
// only once it listens tells the old one to finish its requests and leave, and rewrites the PID
// file (as Puma does when it comes back). No connection is
// refused and no socket file disappears during the restart. On a graceful stop the socket file and
// the PID file are removed, as Puma does.
//
// Options: --socket PATH, --pid PATH (or WEB_SERVER_SOCKET, WEB_SERVER_PID).
import cluster from 'node:cluster';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(name);
  return i === -1 ? def : args[i + 1];
};
const socketPath = opt('--socket', process.env.WEB_SERVER_SOCKET ?? '/tmp/web_server.sock');
const pidPath = opt('--pid', process.env.WEB_SERVER_PID ?? '/tmp/web_server.pid');

if (cluster.isPrimary) primary();
else worker();

function primary() {
  cluster.schedulingPolicy = cluster.SCHED_NONE;
  let current;
  let stopping = false;

  const fork = () => {
    const w = cluster.fork();
    w.once('listening', () => {
      const old = current;
      current = w;
      if (old) old.disconnect(); // finishes its in-flight requests, then exits
      // Rewritten after every (re)start, as Puma does: a supervisor sees the restart is done.
      writePid();
    });
    w.once('exit', (code, signal) => {
      if (w === current && !stopping) {
        console.error(`demo-app: worker ${w.process.pid} died (${signal ?? code}); master exits`);
        cleanup();
        process.exit(1);
      }
    });
  };

  const stop = (graceful) => {
    if (stopping) return;
    stopping = true;
    for (const w of Object.values(cluster.workers)) {
      if (graceful) w.disconnect();
      else w.kill('SIGKILL');
    }
    const done = () => {
      cleanup();
      process.exit(0);
    };
    if (!graceful) return done();
    const t = setTimeout(done, 30_000);
    t.unref();
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers).length === 0) done();
    });
  };

  process.on('SIGTERM', () => stop(true));
  process.on('SIGQUIT', () => stop(true));
  process.on('SIGINT', () => stop(false));
  process.on('SIGUSR2', () => {
    if (!stopping) fork();
  });

  removeStaleSocket(() => fork());
}

function worker() {
  const startedAt = new Date().toISOString();
  const server = http.createServer((req, res) => {
    if (req.url === '/stream') {
      // Server-sent events: one event every 100 ms, five times.
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let n = 0;
      const t = setInterval(() => {
        res.write(`data: tick ${++n}\n\n`);
        if (n === 5) {
          clearInterval(t);
          res.end();
        }
      }, 100);
      return;
    }
    let size = 0;
    req.on('data', (c) => (size += c.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          app: 'web-server-gateway demo',
          master_pid: process.ppid,
          worker_pid: process.pid,
          started_at: startedAt,
          method: req.method,
          url: req.url,
          body_bytes: size,
          x_forwarded_for: req.headers['x-forwarded-for'] ?? null,
          x_real_ip: req.headers['x-real-ip'] ?? null,
        }) + '\n',
      );
    });
  });
  // Above the gateway's upstream idle timeout (4 s), as Puma's 20 s is.
  server.keepAliveTimeout = 20_000;
  server.listen(socketPath, () => {
    // Connectable by the gateway's workers when they run as another user (--user), as Puma's
    // `bind 'unix://...?umask=0000'` makes its socket for nginx's workers.
    try {
      fs.chmodSync(socketPath, 0o666);
    } catch {
      // the master may have replaced it already (USR2); the new one is chmodded by its worker
    }
    console.log(`demo-app: master ${process.ppid} worker ${process.pid} serving on unix:${socketPath}`);
  });
  // The master asks a worker to leave with disconnect(): close idle keep-alive connections too.
  process.on('disconnect', () => server.closeIdleConnections());
  process.on('SIGTERM', () => {});
  process.on('SIGQUIT', () => {});
  process.on('SIGINT', () => {});
}

function writePid() {
  const tmp = `${pidPath}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${process.pid}\n`, { mode: 0o644 });
  fs.renameSync(tmp, pidPath);
  console.log(`demo-app: master ${process.pid} wrote ${pidPath}`);
}

function cleanup() {
  try {
    if (fs.readFileSync(pidPath, 'utf8').trim() === String(process.pid)) fs.unlinkSync(pidPath);
  } catch {
    // already gone or someone else's
  }
}

// A socket file left by a crash makes bind fail: remove it only when nothing answers on it.
function removeStaleSocket(then) {
  if (!fs.existsSync(socketPath)) return then();
  const probe = net.connect(socketPath);
  probe.once('connect', () => {
    console.error(`demo-app: ${socketPath} is in use by another server; stop it first`);
    process.exit(1);
  });
  probe.once('error', () => {
    fs.unlinkSync(socketPath);
    then();
  });
}

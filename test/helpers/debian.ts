/**
 * Tests that need Debian packages (puma, unicorn, thin, varnishtest, promtool) skip on a developer
 * machine without them, with the reason shown; in CI (.ci/run sets GATEWAY_REQUIRE_DEBIAN=1) a
 * missing package is a failure instead.
 */
import { execFileSync } from 'node:child_process';

export function which(bin: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Returns the binary's path, or undefined (skip) when allowed; throws in CI. */
export function requireBinary(bin: string, pkg: string): string | undefined {
  const path = which(bin);
  if (path) return path;
  const reason = `${bin} not found: install Debian package "${pkg}" (apt-get install ${pkg})`;
  if (process.env.GATEWAY_REQUIRE_DEBIAN === '1') throw new Error(`${reason}; GATEWAY_REQUIRE_DEBIAN=1 makes this a failure`);
  // Visible in the test output.
  process.stderr.write(`SKIP: ${reason}\n`);
  return undefined;
}

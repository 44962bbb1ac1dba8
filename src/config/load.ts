/** Building the raw configuration from a JSON file and command-line flags (flags win). */
import { readFileSync } from 'node:fs';
import { SCHEMA, keyOfFlag, type KeySpec } from './schema.js';
import type { Problem } from './validate.js';

export interface ParsedArgs {
  raw: Record<string, unknown>;
  configFile?: string;
  /** `--nginx-config FILE`: an nginx.conf translated by nginx-compat, under --config and flags. */
  nginxConfig?: string;
  /** `--strict`: an unknown nginx directive is an error, not a warning. */
  strict?: boolean;
  problems: Problem[];
}

/** Flags of the form `--key value` or `--key=value`; `--bool-key` alone means true. */
export function parseFlags(argv: string[]): ParsedArgs {
  const raw: Record<string, unknown> = {};
  const problems: Problem[] = [];
  let configFile: string | undefined;
  let nginxConfig: string | undefined;
  let strict = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--strict') {
      strict = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      problems.push({ key: arg, value: arg, message: 'unexpected argument', fix: 'options are written --name value; see `gateway --help`' });
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const key = keyOfFlag(flag);
    const spec = (SCHEMA as Record<string, KeySpec>)[key];
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (value === undefined && !(spec?.kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1]?.startsWith('--')))) {
      value = argv[i + 1];
      if (value === undefined) {
        problems.push({ key, value: null, message: `${flag} needs a value`, fix: `write ${flag} VALUE` });
        continue;
      }
      i++;
    }
    if (key === 'config') {
      configFile = value;
      continue;
    }
    if (key === 'nginxConfig') {
      nginxConfig = value;
      continue;
    }
    const v: unknown = value === undefined ? true : value === 'null' && spec?.nullable ? null : value;
    if (spec?.repeatable) {
      const prev = raw[key];
      raw[key] = Array.isArray(prev) ? [...prev, v] : [v];
    } else {
      raw[key] = v;
    }
  }
  return { raw, problems, strict, ...(configFile === undefined ? {} : { configFile }), ...(nginxConfig === undefined ? {} : { nginxConfig }) };
}

/** The nginx.conf's keys (if any), then the file's, then the flags on top. */
export function loadRaw(args: ParsedArgs, fromNginx: Record<string, unknown> = {}): { raw: Record<string, unknown>; problems: Problem[] } {
  const problems = [...args.problems];
  let fromFile: Record<string, unknown> = {};
  if (args.configFile !== undefined) {
    try {
      const parsed: unknown = JSON.parse(readFileSync(args.configFile, 'utf8'));
      if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
        problems.push({ key: 'config', value: args.configFile, message: 'must hold a JSON object', fix: 'write { "listen": ["0.0.0.0:80"], ... }' });
      } else {
        fromFile = parsed as Record<string, unknown>;
      }
    } catch (err) {
      problems.push({ key: 'config', value: args.configFile, message: `cannot be read: ${(err as Error).message}`, fix: 'give a readable JSON file' });
    }
  }
  return { raw: { ...fromNginx, ...fromFile, ...args.raw }, problems };
}

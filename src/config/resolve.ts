/**
 * The whole configuration as `gateway run` is given it: flags over `--config FILE` over
 * `--nginx-config FILE`, validated. Read at start, on HUP, and by each worker process.
 */
import { loadRaw, parseFlags } from './load.js';
import { validateConfig, type Problem } from './validate.js';
import { readNginx, type NginxSite } from '../nginx-site.js';

/** The configuration from flags, --config and --nginx-config; nginx's own lines go to `say`. */
export function configFrom(argv: string[], say: (line: string) => void): { config?: ReturnType<typeof validateConfig>['config']; problems: Problem[]; nginxFailed?: boolean; nginx: NginxSite } {
  const args = parseFlags(argv);
  let fromNginx: Record<string, unknown> = {};
  let nginx: NginxSite = {};
  if (args.nginxConfig !== undefined) {
    const imported = readNginx(args.nginxConfig, args.strict === true, say);
    if (!imported) return { problems: [], nginxFailed: true, nginx };
    const { config, ...rest } = imported;
    fromNginx = config;
    nginx = rest;
  }
  const loaded = loadRaw(args, fromNginx);
  const res = validateConfig(loaded.raw);
  return { config: res.config, problems: [...loaded.problems, ...res.problems], nginx };
}


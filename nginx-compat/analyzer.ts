/**
 * Checks a parsed tree against the directive table as ngx_conf_handler() does: the directive is
 * known, allowed in its block, has a block if and only if it takes one, and has as many arguments
 * as it takes; `on`/`off` for flags. nginx stops at the first error; we collect them all, in file
 * order, so `gateway check` reports every one at once. A block that holds an error is still checked
 * inside when its context is known.
 *
 * An unknown directive is a warning naming it and its line (the gateway ignores it), or in strict
 * mode an error worded as nginx's `unknown directive "x"`. Its block is skipped: what it contains
 * is unknowable (it may be data, as in `map`).
 */
import { NginxConfigError, warning, type Warning } from './errors.js';
import { DIRECTIVES, arityAllows, innerContext, type Context, type DirectiveSpec } from './directives.js';
import type { Directive } from './parser.js';

export interface AnalyzeOptions {
  /** Unknown directives are errors, not warnings. */
  strict?: boolean;
}

export interface Analysis {
  errors: NginxConfigError[];
  warnings: Warning[];
}

export function specsOf(name: string): readonly DirectiveSpec[] | undefined {
  return Object.hasOwn(DIRECTIVES, name) ? DIRECTIVES[name] : undefined;
}

export function analyze(tree: Directive[], options: AnalyzeOptions = {}): Analysis {
  const out: Analysis = { errors: [], warnings: [] };
  walk(tree, 'main', options, out);
  return out;
}

function walk(nodes: Directive[], ctx: Context, options: AnalyzeOptions, out: Analysis): void {
  for (const d of nodes) {
    const name = d.directive;
    const err = (code: ConstructorParameters<typeof NginxConfigError>[0], reason: string): void => {
      out.errors.push(new NginxConfigError(code, reason, d.file, d.line));
    };
    const specs = specsOf(name);
    if (specs === undefined) {
      if (options.strict) err('GW_ERR_NGINX_UNKNOWN', `unknown directive "${name}"`);
      else out.warnings.push(warning('GW_WARN_NGINX_UNKNOWN', name, `unknown directive "${name}"${d.block ? ' and its block' : ''} ignored`, d));
      continue;
    }
    const spec = specs.find((s) => s.contexts.includes(ctx));
    if (spec === undefined) {
      err('GW_ERR_NGINX_CONTEXT', `"${name}" directive is not allowed here`);
      continue;
    }
    if (!spec.block && d.block !== undefined) {
      err('GW_ERR_NGINX_ARGS', `directive "${name}" is not terminated by ";"`);
      continue;
    }
    if (spec.block && d.block === undefined) {
      err('GW_ERR_NGINX_ARGS', `directive "${name}" has no opening "{"`);
      continue;
    }
    if (!arityAllows(spec.arity, d.args.length)) {
      err('GW_ERR_NGINX_ARGS', `invalid number of arguments in "${name}" directive`);
    } else if (spec.arity === 'flag') {
      // ngx_conf_set_flag_slot compares without case.
      const v = (d.args[0] as string).toLowerCase();
      if (v !== 'on' && v !== 'off') err('GW_ERR_NGINX_VALUE', `invalid value "${d.args[0]}" in "${name}" directive, it must be "on" or "off"`);
    }
    const inner = innerContext(name, ctx);
    if (d.block !== undefined && !spec.opaque && inner !== undefined) walk(d.block, inner, options, out);
  }
}

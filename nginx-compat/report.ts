/**
 * What a translation collects as it reads the tree: errors, warnings, and which directives it used,
 * so that every directive left unused can be warned about afterwards (never silence).
 */
import { NginxConfigError, warning, type NginxErrorCode, type Warning, type WarningCode } from './errors.js';
import type { Directive } from './parser.js';

export class Report {
  readonly errors: NginxConfigError[] = [];
  readonly warnings: Warning[] = [];
  private readonly used = new Set<Directive>();
  /** A value read for several locations (an http-level root) is reported once. */
  private readonly reported = new Set<string>();

  use<T extends Directive | undefined>(d: T): T {
    if (d !== undefined) this.used.add(d);
    return d;
  }

  isUsed(d: Directive): boolean {
    return this.used.has(d);
  }

  error(code: NginxErrorCode, reason: string, at: Directive): void {
    this.used.add(at);
    const key = `${at.file}:${at.line}:${reason}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.errors.push(new NginxConfigError(code, reason, at.file, at.line));
  }

  /** A value nginx itself refuses: `"keepalive_timeout" directive invalid value`. */
  invalid(at: Directive, reason = 'invalid value'): void {
    this.error('GW_ERR_NGINX_VALUE', reason === 'invalid value' ? `"${at.directive}" directive invalid value` : reason, at);
  }

  /** nginx's `"root" directive is duplicate`, once per directive however often its level is read. */
  duplicate(d: Directive): void {
    this.error('GW_ERR_NGINX_VALUE', `"${d.directive}" directive is duplicate`, d);
  }

  warn(code: WarningCode, reason: string, at: Directive): void {
    this.used.add(at);
    const key = `${at.file}:${at.line}:${reason}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.warnings.push(warning(code, at.directive, reason, at));
  }
}

/** The directives of one block (or the top level), outermost first when several are given. */
export type Level = readonly Directive[];

export function named(level: Level, name: string): Directive[] {
  return level.filter((d) => d.directive === name);
}

/**
 * nginx's inheritance: the directives `name` of the innermost level that has any. Those of outer
 * levels count as used (they were read and overridden, or apply elsewhere).
 */
export function innermost(report: Report, levels: readonly Level[], name: string): Directive[] {
  let found: Directive[] = [];
  for (const level of levels) {
    const here = named(level, name);
    for (const d of here) report.use(d);
    if (here.length > 0) found = here;
  }
  return found;
}

/** A directive taking one value per level: a second one at the same level is nginx's "is duplicate". */
export function single(report: Report, levels: readonly Level[], name: string): Directive | undefined {
  for (const level of levels) for (const dup of named(level, name).slice(1)) report.duplicate(dup);
  return innermost(report, levels, name)[0];
}

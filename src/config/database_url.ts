/**
 * The `database` setting's URL: which backend it selects and how it is shown. Kept apart from the
 * PostgreSQL driver so reading the configuration never loads `pg`.
 *
 * @module
 */

/** True for a `postgres://` or `postgresql://` URL (the `database` setting). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** The URL with its password replaced by `***` (logs, /status, check-config). */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "postgres://(unparsable URL)";
  }
}

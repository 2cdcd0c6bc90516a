/**
 * JSON error bodies: every error the API returns is `{ "error": "<sentence>" }` with a fitting
 * status code, so scripts and the CLI can show the reason as-is.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** The body of every error response (the CLI shows `error` as-is). */
export interface ErrorBody {
  error: string;
}

/** A `{error}` JSON response. */
export function errorResponse(c: Context, status: ContentfulStatusCode, message: string): Response {
  const body: ErrorBody = { error: message };
  return c.json(body, status);
}

/** Bad input found while parsing a request: the handler's caller turns it into a 400. */
export class BadRequest extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BadRequest";
  }
}

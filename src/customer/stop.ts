/**
 * A stop asked for by SIGTERM or SIGINT, in two steps. `stopping` fires at once: no new poll starts,
 * a wait ends, and a session that has not turned yet gives up (nothing was delivered in it). A
 * session already delivering gets `graceMs` to finish; then, or at a second request, `abandon`
 * fires and it is cut. Cutting is safe: the provider keeps every message the local server did not
 * confirm (RFC 2645 4), so the worst case is a message delivered twice, never one lost.
 */
export class GracefulStop {
  readonly #stopping = new AbortController();
  readonly #abandon = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param graceMs time a delivering session gets after the first request */
  constructor(readonly graceMs: number) {}

  /** Fires at the first request. */
  get stopping(): AbortSignal {
    return this.#stopping.signal;
  }

  /** Fires `graceMs` after the first request, or at the second. */
  get abandon(): AbortSignal {
    return this.#abandon.signal;
  }

  /** Asks for a stop; a second call cuts a delivering session at once. */
  request(): void {
    if (this.#stopping.signal.aborted) {
      this.#cut();
      return;
    }
    this.#stopping.abort();
    this.#timer = setTimeout(() => this.#cut(), this.graceMs);
  }

  /** Clears the grace timer (call once the work is over). */
  dispose(): void {
    clearTimeout(this.#timer);
  }

  #cut(): void {
    clearTimeout(this.#timer);
    this.#abandon.abort();
  }
}

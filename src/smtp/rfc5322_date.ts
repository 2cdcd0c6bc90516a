/**
 * RFC 5322 3.3 date-time formatting, as used by Received headers and DSNs.
 *
 * @module
 */

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Options for {@link formatRfc5322Date}. */
export interface DateFormatOptions {
  /**
   * Offset from UTC in minutes, east positive (`+0200` is 120). Default: the local offset at `date`,
   * since RFC 5321 4.4 prefers local time with its offset.
   */
  utcOffsetMinutes?: number;
}

const pad2 = (n: number): string => String(n).padStart(2, "0");

/**
 * Formats `date` as `Tue, 3 Jun 2025 10:15:02 +0000`: day name, day, month name, 4-digit year,
 * `HH:MM:SS`, numeric zone (RFC 5322 3.3; no obsolete forms, no zone names).
 */
export function formatRfc5322Date(date: Date, options: DateFormatOptions = {}): string {
  const offset = options.utcOffsetMinutes ?? -date.getTimezoneOffset();
  // Shift by the offset and read the UTC fields, which then show the wall-clock time at that offset.
  const shifted = new Date(date.getTime() + offset * 60_000);
  const sign = offset < 0 ? "-" : "+";
  const absolute = Math.abs(offset);
  const zone = `${sign}${pad2(Math.floor(absolute / 60))}${pad2(absolute % 60)}`;
  const year = String(shifted.getUTCFullYear()).padStart(4, "0");
  return `${DAYS[shifted.getUTCDay()]}, ${shifted.getUTCDate()} ${MONTHS[shifted.getUTCMonth()]} ${year} ` +
    `${pad2(shifted.getUTCHours())}:${pad2(shifted.getUTCMinutes())}:${
      pad2(shifted.getUTCSeconds())
    } ${zone}`;
}

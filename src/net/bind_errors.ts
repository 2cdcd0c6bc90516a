/** Turns a failed bind into one line an operator can act on. */
export function describeBindError(error: unknown, host: string, port: number): string {
  const code = (error as { code?: string })?.code ?? "";
  const name = (error as { name?: string })?.name ?? "";
  const text = String((error as Error)?.message ?? error);
  const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (code === "EACCES" || name === "PermissionDenied" || /permission denied|EACCES/i.test(text)) {
    return `Cannot listen on ${where}: permission denied. Ports below 1024 need root or ` +
      `CAP_NET_BIND_SERVICE (setcap cap_net_bind_service=+ep on the binary); or choose a port >= 1024`;
  }
  if (code === "EADDRINUSE" || name === "AddrInUse" || /address already in use|EADDRINUSE/i.test(text)) {
    return `Cannot listen on ${where}: the address is already in use by another program`;
  }
  if (code === "EADDRNOTAVAIL" || name === "AddrNotAvailable" || /EADDRNOTAVAIL|not available/i.test(text)) {
    return `Cannot listen on ${where}: that address does not belong to this machine`;
  }
  return `Cannot listen on ${where}: ${text}`;
}

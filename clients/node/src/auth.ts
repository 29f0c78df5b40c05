import { BlockList, isIP } from "node:net";

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** The request metadata naming the tenant a call acts in. */
export const TENANT_HEADER = "x-totpd-tenant";

/**
 * Checks a metadata value: printable ASCII without surrounding spaces. The
 * message names the option, never the value (a token must not reach a log).
 */
export function checkHeaderValue(value: string, what: string): string {
  if (!value || value.trim() !== value || !/^[\x20-\x7e]+$/.test(value)) {
    throw new TypeError(`${what} must be non-empty printable ASCII without surrounding spaces`);
  }
  return value;
}

/** Whether a gRPC target (host:port, [v6]:port, dns:///, ipv4:, unix:) names this machine. */
export function isLoopback(target: string): boolean {
  if (target.startsWith("unix:") || target.startsWith("unix-abstract:")) return true;
  for (const scheme of ["dns:///", "dns:", "ipv4:", "ipv6:"]) {
    if (target.startsWith(scheme)) {
      target = target.slice(scheme.length);
      break;
    }
  }
  let host = target;
  if (target.startsWith("[")) host = target.slice(1).split("]", 1)[0] ?? "";
  else if (target.split(":").length === 2) host = target.slice(0, target.lastIndexOf(":"));
  if (host.toLowerCase() === "localhost") return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? "ipv4" : "ipv6");
}

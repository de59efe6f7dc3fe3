/**
 * Bind addresses in controller-runtime's form: "host:port", ":port" (every interface), "[v6]:port";
 * "0" turns the server off. Port 0 asks the system for a free port.
 */
import { isIP } from 'node:net';

export interface BindAddress {
  /** undefined: every interface. */
  host: string | undefined;
  port: number;
}

const HOSTNAME = /^(?=.{1,253}$)[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$/;

/** The address, null for "0" (disabled); throws an Error saying what is wrong. */
export function parseBindAddress(text: string): BindAddress | null {
  if (text === '0') return null;
  const colon = text.lastIndexOf(':');
  if (colon < 0) throw new Error(`not host:port (":8080", "127.0.0.1:8080", "[::1]:8080"), or "0" to disable`);
  let host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new Error(`the port must be a number from 0 to 65535`);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1);
    if (isIP(host) !== 6) throw new Error(`"${host}" is not an IPv6 address`);
  } else if (host !== '' && isIP(host) !== 4 && !HOSTNAME.test(host)) {
    throw new Error(`"${host}" is not a host name or IP address (IPv6 goes in brackets)`);
  }
  return { host: host === '' ? undefined : host, port: Number(portText) };
}

export function formatBindAddress(address: BindAddress | null): string {
  if (address === null) return '0';
  const host = address.host === undefined ? '' : address.host.includes(':') ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}

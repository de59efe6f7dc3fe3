/**
 * Errors from the API server, and the classifiers reconcilers branch on.
 *
 * A KubeApiError never carries the request body: bodies of Secret writes and TokenRequests hold
 * tokens, and errors end up in logs, Events and conditions.
 */

/** The metav1.Status object the API server returns on failure (the fields we read). */
export interface KubeStatus {
  kind?: string;
  apiVersion?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: {
    name?: string;
    group?: string;
    kind?: string;
    uid?: string;
    causes?: { reason?: string; message?: string; field?: string }[];
    retryAfterSeconds?: number;
  };
}

export interface KubeApiErrorInit {
  /** HTTP status code; 0 when no response was received (network error, timeout). */
  statusCode: number;
  /** metav1.Status reason (NotFound, Conflict, AlreadyExists, Expired, ...), or a local one. */
  reason: string;
  message: string;
  method: string;
  path: string;
  status?: KubeStatus;
  retryAfterSeconds?: number;
  cause?: unknown;
}

/** Status messages are the server's, but keep them bounded in logs and conditions. */
const MAX_MESSAGE = 2000;

export class KubeApiError extends Error {
  readonly statusCode: number;
  readonly reason: string;
  readonly method: string;
  readonly path: string;
  readonly status: KubeStatus | undefined;
  readonly retryAfterSeconds: number | undefined;
  /** The server's message alone, without method and path (for conditions and Events). */
  readonly serverMessage: string;

  constructor(init: KubeApiErrorInit) {
    const msg = init.message.length > MAX_MESSAGE ? `${init.message.slice(0, MAX_MESSAGE)}...` : init.message;
    super(`${init.method} ${init.path}: ${init.statusCode || 'no response'} ${init.reason}: ${msg}`, {
      cause: init.cause,
    });
    this.name = 'KubeApiError';
    this.statusCode = init.statusCode;
    this.reason = init.reason;
    this.method = init.method;
    this.path = init.path;
    this.status = init.status;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.serverMessage = msg;
  }

  /** Builds the error from a non-2xx response; `bodyText` is the response body, never the request's. */
  static fromResponse(method: string, path: string, statusCode: number, statusText: string, bodyText: string, retryAfterHeader?: string | null): KubeApiError {
    let status: KubeStatus | undefined;
    try {
      const parsed: unknown = JSON.parse(bodyText);
      if (parsed && typeof parsed === 'object' && (parsed as KubeStatus).kind === 'Status') {
        status = parsed as KubeStatus;
      }
    } catch {
      // Not JSON (a proxy's HTML page, say): the status line is all we report.
    }
    const retryAfterFromHeader = retryAfterHeader ? Number.parseInt(retryAfterHeader, 10) : Number.NaN;
    return new KubeApiError({
      statusCode,
      reason: status?.reason || reasonForCode(statusCode),
      message: status?.message || statusText || `HTTP ${statusCode}`,
      method,
      path,
      status,
      retryAfterSeconds: status?.details?.retryAfterSeconds ?? (Number.isFinite(retryAfterFromHeader) ? retryAfterFromHeader : undefined),
    });
  }
}

/** The reason the API server uses for a code when the body carries none (as in apimachinery). */
export function reasonForCode(code: number): string {
  switch (code) {
    case 400:
      return 'BadRequest';
    case 401:
      return 'Unauthorized';
    case 403:
      return 'Forbidden';
    case 404:
      return 'NotFound';
    case 405:
      return 'MethodNotAllowed';
    case 406:
      return 'NotAcceptable';
    case 409:
      return 'Conflict';
    case 410:
      return 'Expired';
    case 413:
      return 'RequestEntityTooLarge';
    case 415:
      return 'UnsupportedMediaType';
    case 422:
      return 'Invalid';
    case 429:
      return 'TooManyRequests';
    case 500:
      return 'InternalError';
    case 503:
      return 'ServiceUnavailable';
    case 504:
      return 'Timeout';
    default:
      return code >= 500 ? 'InternalError' : 'Unknown';
  }
}

function code(err: unknown): number | undefined {
  if (err instanceof KubeApiError) return err.statusCode;
  if (err && typeof err === 'object') {
    const e = err as { statusCode?: unknown; code?: unknown };
    if (typeof e.statusCode === 'number') return e.statusCode;
    if (typeof e.code === 'number') return e.code; // a bare metav1.Status
  }
  return undefined;
}

function reason(err: unknown): string | undefined {
  if (err && typeof err === 'object') {
    const r = (err as { reason?: unknown }).reason;
    if (typeof r === 'string') return r;
  }
  return undefined;
}

export function isNotFound(err: unknown): boolean {
  return code(err) === 404 || reason(err) === 'NotFound';
}

/** 409 with reason Conflict: a stale resourceVersion or a failed precondition. */
export function isConflict(err: unknown): boolean {
  return (code(err) === 409 && reason(err) !== 'AlreadyExists') || reason(err) === 'Conflict';
}

export function isAlreadyExists(err: unknown): boolean {
  return reason(err) === 'AlreadyExists';
}

/** 410 Gone, or reason Expired: the resourceVersion (or continue token) is too old. */
export function isGone(err: unknown): boolean {
  return code(err) === 410 || reason(err) === 'Expired' || reason(err) === 'Gone';
}

export function isForbidden(err: unknown): boolean {
  return code(err) === 403 || reason(err) === 'Forbidden';
}

export function isInvalid(err: unknown): boolean {
  return code(err) === 422 || reason(err) === 'Invalid';
}

/** Error codes of Node and undici for failures where retrying the same request can succeed. */
const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** True for errors where no response was received: refused or reset connections, timeouts. */
export function isNetworkError(err: unknown): boolean {
  if (err instanceof KubeApiError) return err.statusCode === 0;
  for (let e: unknown = err, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string' && RETRYABLE_NETWORK_CODES.has(c)) return true;
    const name = (e as { name?: unknown }).name;
    if (name === 'TimeoutError') return true;
    // undici's fetch reports every transport failure as TypeError('fetch failed') with a cause.
    if (e instanceof TypeError && e.message === 'fetch failed') return true;
  }
  return false;
}

/** Worth retrying unchanged: throttled (429), server errors (5xx), or no response at all. */
export function isRetryable(err: unknown): boolean {
  const c = code(err);
  if (c === 429 || (c !== undefined && c >= 500 && c <= 599)) return true;
  const r = reason(err);
  if (r === 'TooManyRequests' || r === 'ServerTimeout' || r === 'Timeout' || r === 'InternalError' || r === 'ServiceUnavailable') return true;
  return isNetworkError(err);
}

/** A short, body-free description of any error, for logs and conditions. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * JSON.parse of an API server's answer. V8's SyntaxError quotes the text it failed on, and that text
 * may hold a token (a TokenRequest answer, a Secret in a watch): the error names the request and the
 * size, never the content.
 */
export function parseJson<T>(text: string, what: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${what}: the answer is not valid JSON (${text.length} characters)`);
  }
}

// One value for every refusal (a code, the record's full reason, the client's status and short reason)
// and one error class for the places that throw; both carry a stable code from refusalCodes.ts.
import { CODES, type RefusalCode } from './refusalCodes.ts';

export { CODES, EXIT, codeForStatus, type CodeEntry, type RefusalCode } from './refusalCodes.ts';

/** Why the gateway said no: the client gets `status` and `clientReason`, the audit record `reason`. */
export interface Refusal {
  readonly code: RefusalCode;
  /** The full reason, for the audit record only. */
  readonly reason: string;
  readonly status: number;
  /** Short, safe for the client: never internals. */
  readonly clientReason: string;
  /** Response headers the refusal needs (retry-after, location). */
  readonly headers?: Readonly<Record<string, string | number>>;
}

/** What a refusal may add to its code: headers, or a client message that names the client's own input. */
export interface RefusalExtra {
  headers?: Record<string, string | number>;
  clientReason?: string;
}

/** The one way to build a refusal: the code fixes the status and, unless given, the client's message. */
export function refuse(code: RefusalCode, reason: string, extra: RefusalExtra = {}): Refusal {
  const entry = CODES[code];
  return { code, reason, status: entry.status, clientReason: extra.clientReason ?? entry.message, ...(extra.headers && { headers: extra.headers }) };
}

/**
 * The Refusal part of a value that carries one (an authorization's denial, an upstream's or the publisher
 * registry's answer, a token check): only its fields, so nothing else it carries reaches a record.
 */
export function refusalOf(carrier: Refusal, headers?: Record<string, string | number>): Refusal {
  const merged = headers ?? carrier.headers;
  return { code: carrier.code, reason: carrier.reason, status: carrier.status, clientReason: carrier.clientReason, ...(merged && { headers: merged }) };
}

/** The body every refusal answers with: the short reason alone, as JSON. */
export function refusalBody(clientReason: string): string {
  return JSON.stringify({ error: clientReason }) + '\n';
}

/** A failure thrown where a value cannot be returned (the command line, the PKI, an upstream that refused). */
export class GatehouseError<C extends string = string> extends Error {
  readonly code: C;
  constructor(code: C, message: string) {
    super(message);
    this.name = 'GatehouseError';
    this.code = code;
  }
}

/** A refusal thrown: an upstream that would not open carries the status and words the client is owed. */
export class RefusalError extends GatehouseError<RefusalCode> {
  readonly refusal: Refusal;
  constructor(refusal: Refusal) {
    super(refusal.code, refusal.reason);
    this.name = 'RefusalError';
    this.refusal = refusal;
  }
}

/** A command-line failure already worded for the operator: printed on one line, exit 1. */
export const COMMAND_FAILED = 'GH_COMMAND_FAILED';

export function commandFailure(message: string): GatehouseError<typeof COMMAND_FAILED> {
  return new GatehouseError(COMMAND_FAILED, message);
}

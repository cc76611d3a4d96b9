// The issuer's endpoints under /.well-known/gatehouse/login (LOGIN_PATH), served by the gateway's page way in: which
// handler takes which path and method (the device flow for terminals, the code flow for browsers).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditRecord } from '../audit/auditRecord.ts';
import type { Exchange } from '../exchange/exchange.ts';
import type { IssuerService } from '../issuer/issuerService.ts';
import type { PortalSignIn } from '../portal/portalSession.ts';

/** One request to a login endpoint, as the page way in admitted it. */
export interface LoginCall {
  req: IncomingMessage;
  res: ServerResponse;
  exchange: Exchange;
  /** The normalized path (the dispatcher's), never re-read from the raw target. */
  path: string;
  query: URLSearchParams;
  /** The portal's rule for where a sign-in returns to, and its session start (the code flow ends there). */
  portal: PortalSignIn;
}

export type LoginHandler = (call: LoginCall) => void | Promise<void>;

export interface LoginEndpoint {
  method: 'GET' | 'POST';
  path: string;
  handle: LoginHandler;
}

/** Closes the exchange with its record, the way every gateway page does. */
export function recordLogin(exchange: Exchange, fields: Partial<AuditRecord> & Pick<AuditRecord, 'event'>): void {
  exchange.close(fields, fields.decision === 'deny' ? 'refused' : 'completed');
}

/** What the page way in calls for every path under LOGIN_PATH. */
export interface LoginPages {
  serve(call: LoginCall): void | Promise<void>;
  issuer: IssuerService;
}

/** A JSON answer the client (`gatehouse login`) reads; never cached. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers, 'content-length': String(Buffer.byteLength(text)) }).end(text);
}

/** The login pages of `issuer` from its endpoints; a path or method none takes is refused (404/405) with a record. */
export function loginPages(issuer: IssuerService, endpoints: readonly LoginEndpoint[]): LoginPages {
  return {
    issuer,
    serve(call) {
      const method = call.req.method ?? '';
      const here = endpoints.filter((e) => e.path === call.path);
      const endpoint = here.find((e) => e.method === method || (e.method === 'GET' && method === 'HEAD'));
      if (endpoint !== undefined && issuer.settings() !== undefined) return endpoint.handle(call);
      call.req.resume();
      const status = issuer.settings() === undefined || here.length === 0 ? 404 : 405;
      const reason = issuer.settings() === undefined ? 'this gateway runs no issuer' : status === 404 ? 'no such login endpoint' : `login endpoint ${call.path} does not take ${method}`;
      recordLogin(call.exchange, { event: 'request', method, path: call.path, decision: 'deny', status, reason });
      sendJson(call.res, status, { error: status === 404 ? 'not_found' : 'method_not_allowed', message: status === 404 ? 'no such login endpoint' : `${method} is not used here` }, status === 405 ? { allow: here.map((e) => e.method).join(', ') } : {});
    },
  };
}

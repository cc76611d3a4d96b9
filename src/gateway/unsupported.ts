// Placeholder handlers for ways in that this build does not forward yet (WebSocket upgrades, CONNECT):
// they refuse with 501 and an audit record, so nothing slips through unrecorded.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { AuditLog } from '../audit/auditLog.ts';
import { auditClient } from '../audit/auditRecord.ts';
import { contextOf } from '../listener/connectionContext.ts';

export function refuseUnsupported(audit: AuditLog, protocol: 'websocket' | 'tcp') {
  return (req: IncomingMessage, socket: Duplex): void => {
    const ctx = contextOf(req.socket as TLSSocket);
    audit.write({ event: 'request', conn: ctx?.id, source: ctx?.source, client: auditClient(ctx?.identity), protocol, method: req.method ?? '', path: req.url ?? '', decision: 'deny', status: 501, reason: `${protocol} forwarding is not enabled in this build` });
    socket.end('HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 29\r\n\r\n{"error":"not implemented"}\r\n');
  };
}

// Dispatch for a connection that presented no client certificate (issuer.certificates): the device login
// with a CSR goes to the gateway pages' way in; every other request, upgrade and CONNECT is refused with a record.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { refuse } from '../errors/refusal.ts';
import { ignoreSocketErrors, sendRefusal, sendRefusalOnSocket } from '../forward/refusals.ts';
import { redactTarget } from '../forward/redactTarget.ts';
import { CERTIFICATE_LOGIN_PATHS, reservedPath } from '../routing/reservedPaths.ts';
import type { CertificatelessHandlers, ConnectionContext } from './connection.ts';
import type { DispatchTargets } from './dispatch.ts';
import { enter } from './enter.ts';
import { refuseUncounted } from './exchange.ts';

const CLIENT_REASON = 'a client certificate is required here (without one, only gatehouse login --certificate)';
const REASON = 'no client certificate: this connection may reach the certificate login alone';

/** The deny record (within the client's record budgets) and the refusal's words. */
function refusedHere(to: DispatchTargets, conn: ConnectionContext, req: IncomingMessage, protocol: 'http' | 'websocket' | 'tcp') {
  refuseUncounted(conn, to.sinks, { protocol, method: req.method ?? '', target: redactTarget((req.url ?? '').slice(0, 200)), decision: 'deny', status: 403, reason: REASON });
  return refuse('GH_CERTIFICATE_REQUIRED', REASON, { clientReason: CLIENT_REASON });
}

function refuseTunnel(to: DispatchTargets, conn: ConnectionContext, req: IncomingMessage, socket: Duplex, protocol: 'websocket' | 'tcp'): void {
  socket.on('error', ignoreSocketErrors);
  sendRefusalOnSocket(socket, refusedHere(to, conn, req, protocol));
}

/**
 * The handlers of certificate-less connections. The allowed paths are judged on the normalized path, as
 * dispatch judges every reserved path; the login pages then take only their methods, and the device login
 * refuses a certificate-less start that brings no CSR.
 */
export function certificatelessTo(to: DispatchTargets): CertificatelessHandlers {
  return {
    request(req: IncomingMessage, res: ServerResponse, conn: ConnectionContext) {
      const reserved = reservedPath(req.url);
      if (reserved?.kind === 'portal' && CERTIFICATE_LOGIN_PATHS.includes(reserved.path)) return enter(to.portal, conn, to.portal.arrive(req, res, reserved));
      req.resume();
      sendRefusal(res, refusedHere(to, conn, req, 'http'));
    },
    upgrade: (req, socket, _head, conn) => refuseTunnel(to, conn, req, socket, 'websocket'),
    connect: (req, socket, _head, conn) => refuseTunnel(to, conn, req, socket, 'tcp'),
  };
}

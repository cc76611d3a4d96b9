// What the HTTP parser leaves to the gateway before a request may be admitted: one Host, a body framing
// the gateway can re-state faithfully, and an Expect it can honour (100-continue, answered after admission).
import type { IncomingMessage } from 'node:http';
import { requestFraming, type BodyFraming } from './upstreamHeaders.ts';

export type RequestShape =
  | { ok: true; framing: BodyFraming; expectsContinue: boolean }
  | { ok: false; status: number; clientReason: string; reason: string };

export function checkRequestShape(req: IncomingMessage): RequestShape {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if ((req.rawHeaders[i] as string).toLowerCase() === 'host') hosts += 1;
  // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, or with more than one.
  if (hosts === 0 && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return { ok: false, status: 400, clientReason: 'missing Host header', reason: 'HTTP/1.1 request without a Host header' };
  if (hosts > 1) return { ok: false, status: 400, clientReason: 'more than one Host header', reason: `request with ${hosts} Host headers` };
  const framing = requestFraming(req.headers);
  if ('unsupported' in framing) return { ok: false, status: 501, clientReason: 'unsupported transfer coding', reason: `${framing.unsupported} is not supported (only chunked)` };
  const expect = req.headers.expect;
  if (expect !== undefined && expect.trim().toLowerCase() !== '100-continue') {
    return { ok: false, status: 417, clientReason: 'expectation not supported', reason: `Expect: ${JSON.stringify(expect.slice(0, 60))} is not supported` };
  }
  return { ok: true, framing, expectsContinue: expect !== undefined };
}

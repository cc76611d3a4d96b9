// What the HTTP parser leaves to the gateway before a request may be admitted: one Host, a body framing
// the gateway can re-state faithfully, and an Expect it can honour (100-continue, answered after admission).
import type { IncomingMessage } from 'node:http';
import { refuse, type Refusal } from '../errors/refusal.ts';
import { requestFraming, type BodyFraming } from './upstreamHeaders.ts';

export type RequestShape =
  | { ok: true; framing: BodyFraming; expectsContinue: boolean }
  | { ok: false; refusal: Refusal };

export function checkRequestShape(req: IncomingMessage): RequestShape {
  let hosts = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if ((req.rawHeaders[i] as string).toLowerCase() === 'host') hosts += 1;
  // RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, or with more than one.
  if (hosts === 0 && req.httpVersionMajor === 1 && req.httpVersionMinor >= 1) return { ok: false, refusal: refuse('GH_MISSING_HOST', 'HTTP/1.1 request without a Host header') };
  if (hosts > 1) return { ok: false, refusal: refuse('GH_MANY_HOSTS', `request with ${hosts} Host headers`) };
  const framing = requestFraming(req.headers);
  if ('unsupported' in framing) return { ok: false, refusal: refuse('GH_UNSUPPORTED_CODING', `${framing.unsupported} is not supported (only chunked)`) };
  const expect = req.headers.expect;
  if (expect !== undefined && expect.trim().toLowerCase() !== '100-continue') {
    return { ok: false, refusal: refuse('GH_EXPECTATION', `Expect: ${JSON.stringify(expect.slice(0, 60))} is not supported`) };
  }
  return { ok: true, framing, expectsContinue: expect !== undefined };
}

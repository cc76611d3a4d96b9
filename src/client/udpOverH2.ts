// `--transport http2` for UDP flows: RFC 9298 §3.5 extended CONNECT streams on one HTTP/2 session per gateway,
// shared by the flows of one `tunnel` process; DATAGRAM capsules ride each stream's DATA.
import { connect as connectH2, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as connectTls } from 'node:tls';
import { CapsuleChannel, CONNECT_UDP, H2_SESSION_WINDOW_BYTES, H2_STREAM_WINDOW_BYTES } from '../tunnel/udpChannel.ts';
import { bearerOf, tlsOptions, type GatewayEndpoint } from './gatewayEndpoint.ts';
import { classifyError, refusalReason, type TunnelFailure } from './tunnelFailure.ts';
import type { FlowOpenResult } from './udpDialer.ts';

const MAX_ERROR_BODY = 64 * 1024;
/** A session with no flow for this long is closed; the next flow opens another. */
const SESSION_IDLE_MS = 30_000;

interface SharedSession {
  session: ClientHttp2Session;
  /** Resolves once the gateway's SETTINGS are in: whether it takes extended CONNECT (RFC 8441 §3). */
  connectProtocol: Promise<boolean | TunnelFailure>;
  flows: number;
  idle?: NodeJS.Timeout;
}

const sessions = new Map<string, SharedSession>();

function sessionFor(endpoint: GatewayEndpoint): SharedSession {
  const key = `${endpoint.address ?? endpoint.host}:${endpoint.port}`;
  const known = sessions.get(key);
  if (known && !known.session.closed && !known.session.destroyed) return known;
  // ALPN offers h2 alone: the gateway speaks HTTP/2 only to clients that do not offer http/1.1.
  // Wide receive windows, as the gateway's: the flows' datagrams must not wait on WINDOW_UPDATEs.
  const session = connectH2(`https://${endpoint.host}:${endpoint.port}`, { settings: { initialWindowSize: H2_STREAM_WINDOW_BYTES }, createConnection: () => connectTls({ ...tlsOptions(endpoint), ALPNProtocols: ['h2'] }) });
  session.once('connect', () => session.setLocalWindowSize(H2_SESSION_WINDOW_BYTES));
  const shared: SharedSession = {
    session,
    connectProtocol: new Promise((resolve) => {
      session.once('remoteSettings', (settings) => resolve(settings.enableConnectProtocol === true));
      session.once('error', (err: Error) => resolve(classifyError(err)));
      session.once('close', () => resolve({ kind: 'network', code: 'CLOSED', detail: 'connection closed before the gateway settings' }));
    }),
    flows: 0,
  };
  session.on('error', () => {});
  session.once('close', () => {
    clearTimeout(shared.idle);
    if (sessions.get(key) === shared) sessions.delete(key);
  });
  sessions.set(key, shared);
  return shared;
}

/** A flow ended: the session is kept a while for the next one, without holding the process open. */
function release(shared: SharedSession): void {
  shared.flows -= 1;
  if (shared.flows > 0) return;
  shared.session.unref();
  shared.idle = setTimeout(() => shared.session.close(), SESSION_IDLE_MS);
  shared.idle.unref();
}

/** Reads a refusal: its status and the short reason of its JSON body. */
function readRefusal(stream: ClientHttp2Stream, status: number): Promise<TunnelFailure> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = () => resolve({ kind: 'refused', status, reason: refusalReason(Buffer.concat(chunks).toString('utf8'), '') });
    stream.on('data', (chunk: Buffer) => {
      if (length < MAX_ERROR_BODY) chunks.push(chunk);
      length += chunk.length;
    });
    stream.once('end', done);
    stream.once('close', done);
  });
}

/**
 * Opens a flow's stream; a session the gateway was closing (GOAWAY after its idle timeout, or a shutdown) refuses
 * new streams, and the flow is tried once more on a new session.
 */
export async function openUdpFlowOverH2(endpoint: GatewayEndpoint, path: string, queueBytes: number, timeoutMs: number): Promise<FlowOpenResult> {
  const first = await openOnSession(endpoint, path, queueBytes, timeoutMs);
  if (!('retry' in first)) return first;
  const second = await openOnSession(endpoint, path, queueBytes, timeoutMs);
  return 'retry' in second ? second.opened : second;
}

type Attempt = FlowOpenResult | { retry: true; opened: FlowOpenResult };

async function openOnSession(endpoint: GatewayEndpoint, path: string, queueBytes: number, timeoutMs: number): Promise<Attempt> {
  const shared = sessionFor(endpoint);
  shared.flows += 1;
  clearTimeout(shared.idle);
  shared.session.ref();
  const fail = (failure: TunnelFailure): FlowOpenResult => {
    release(shared);
    return { ok: false, failure };
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<TunnelFailure>((resolve) => (timer = setTimeout(() => resolve({ kind: 'network', code: 'TIMEOUT', detail: `no answer within ${timeoutMs} ms` }), timeoutMs)));
  try {
    const settings = await Promise.race([shared.connectProtocol, timeout]);
    if (typeof settings === 'object') return fail(settings);
    if (!settings) return fail({ kind: 'protocol', detail: 'the gateway does not take CONNECT-UDP over HTTP/2 (no SETTINGS_ENABLE_CONNECT_PROTOCOL)' });
    // A session closing under us (GOAWAY received) throws here rather than refusing the stream.
    if (shared.session.closed || shared.session.destroyed) return retry(fail({ kind: 'network', code: 'GOAWAY', detail: 'the gateway closed the connection' }));
    const stream = shared.session.request({
      ':method': 'CONNECT',
      ':protocol': CONNECT_UDP,
      ':scheme': 'https',
      ':path': path,
      ':authority': `${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`,
      'capsule-protocol': '?1',
      authorization: `Bearer ${bearerOf(endpoint)}`,
      'user-agent': 'gatehouse-tunnel',
    });
    stream.on('error', () => {});
    const answer = await Promise.race([
      new Promise<number | TunnelFailure>((resolve) => {
        stream.once('response', (headers) => resolve(Number(headers[':status'])));
        stream.once('close', () => resolve({ kind: 'network', code: 'RESET', detail: `stream reset by the gateway (code ${stream.rstCode})` }));
      }),
      timeout,
    ]);
    if (typeof answer === 'object') {
      stream.close(constants.NGHTTP2_CANCEL);
      // REFUSED_STREAM: never processed (RFC 9113 §8.7), safe to send again.
      return stream.rstCode === constants.NGHTTP2_REFUSED_STREAM ? retry(fail(answer)) : fail(answer);
    }
    if (answer !== 200) {
      const refused = await readRefusal(stream, answer);
      stream.close(constants.NGHTTP2_NO_ERROR);
      return fail(refused);
    }
    stream.once('close', () => release(shared));
    // The gateway's cuts are resets; ours say CANCEL (a malformed capsule from the gateway: PROTOCOL_ERROR).
    return { ok: true, channel: new CapsuleChannel(stream, queueBytes, undefined, (malformed) => stream.close(malformed ? constants.NGHTTP2_PROTOCOL_ERROR : constants.NGHTTP2_CANCEL)) };
  } catch (err) {
    // The session failed between the check and the request (ERR_HTTP2_GOAWAY_SESSION, ERR_HTTP2_INVALID_SESSION).
    return retry(fail(classifyError(err instanceof Error ? err : new Error(String(err)))));
  } finally {
    clearTimeout(timer);
  }
}

const retry = (opened: FlowOpenResult): Attempt => ({ retry: true, opened });

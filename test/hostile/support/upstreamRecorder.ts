// A raw UNIX-socket upstream that records every byte it receives and parses it with its own strict
// HTTP/1.1 parser: the requests it counts are what a real service behind the gateway would act on.
import { createServer, type Server, type Socket } from 'node:net';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';

export interface RecordedRequest {
  /** Index of the upstream connection it arrived on (0-based, in accept order). */
  conn: number;
  method: string;
  target: string;
  version: string;
  /** Header fields in order, names as received (duplicates kept). */
  headers: Array<[string, string]>;
  /** Every value of a header (name case-insensitive). */
  all(name: string): string[];
  /** The only value of a header; undefined if absent; throws if it appears more than once. */
  header(name: string): string | undefined;
  /** How the body was framed on the wire. */
  framing: 'none' | 'content-length' | 'chunked';
  body: Buffer;
}

export interface RecorderOptions {
  /** `http` (default): parse and answer each request; `raw`: record and echo bytes (for tunnels). */
  mode?: 'http' | 'raw';
  /** The raw response for a parsed request (default: 200 with a small JSON body). */
  respond?: (req: RecordedRequest, index: number) => string | Buffer;
}

export interface UpstreamRecorder {
  path: string;
  /** Connections accepted since the last reset. */
  readonly connections: number;
  /** Requests parsed since the last reset. */
  readonly requests: RecordedRequest[];
  /** Strict-parser errors since the last reset (each closed its connection after a 400). */
  readonly parseErrors: string[];
  /** Bytes received on open connections that are not (yet) part of a parsed request: a smuggled prefix waits here. */
  leftover(): number;
  /** Every byte received since the last reset, all connections in accept order. */
  raw(): Buffer;
  /** Bytes received on one connection since the last reset. */
  rawOf(conn: number): Buffer;
  /** Forgets what was recorded (open connections stay open). */
  reset(): void;
  /** Changes the response function (undefined: the default 200 JSON). */
  respondWith(fn: RecorderOptions['respond']): void;
  /** Waits until at least `n` requests are recorded (or the timeout), returns them. */
  waitForRequests(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  /** Destroys open connections (the gateway's pool then has to open new ones). */
  dropConnections(): void;
  close(): Promise<void>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, SP, HTAB and obs-text; no CR, LF, NUL or other controls.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

class ParseError extends Error {}

interface Parsed {
  request: Omit<RecordedRequest, 'conn'>;
  consumed: number;
}

function makeAccessors(headers: Array<[string, string]>): Pick<RecordedRequest, 'all' | 'header'> {
  const all = (name: string) => headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  return {
    all,
    header: (name) => {
      const values = all(name);
      if (values.length > 1) throw new Error(`upstream received ${values.length} ${name} headers: ${JSON.stringify(values)}`);
      return values[0];
    },
  };
}

/** Parses one request at the start of `buf`; undefined when more bytes are needed; throws ParseError. */
export function parseRequest(buf: Buffer): Parsed | undefined {
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) {
    if (buf.length > 64 * 1024) throw new ParseError('header block too large');
    return undefined;
  }
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  for (const line of lines) if (line.includes('\n') || line.includes('\r')) throw new ParseError('bare CR or LF');
  const requestLine = /^([^ ]+) ([^ ]+) (HTTP\/1\.[01])$/.exec(lines[0] ?? '');
  if (!requestLine || !TOKEN.test(requestLine[1]!)) throw new ParseError(`bad request line ${JSON.stringify(lines[0])}`);
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon);
    if (colon <= 0 || !TOKEN.test(name)) throw new ParseError(`bad header line ${JSON.stringify(line)}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) throw new ParseError(`bad header value in ${JSON.stringify(line)}`);
    headers.push([name, value]);
  }
  const accessors = makeAccessors(headers);
  const te = accessors.all('transfer-encoding');
  const cl = accessors.all('content-length');
  let pos = headEnd + 4;
  const base = { method: requestLine[1]!, target: requestLine[2]!, version: requestLine[3]!.slice(5), headers, ...accessors };
  if (te.length > 0) {
    if (cl.length > 0) throw new ParseError('both Transfer-Encoding and Content-Length');
    if (te.length !== 1 || te[0]!.toLowerCase() !== 'chunked') throw new ParseError(`unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', pos);
      if (eol < 0) return undefined;
      const sizeLine = buf.subarray(pos, eol).toString('latin1');
      const m = /^([0-9A-Fa-f]{1,8})(;[^\r\n]*)?$/.exec(sizeLine);
      if (!m) throw new ParseError(`bad chunk size line ${JSON.stringify(sizeLine)}`);
      const size = parseInt(m[1]!, 16);
      pos = eol + 2;
      if (size === 0) {
        for (;;) {
          const tEol = buf.indexOf('\r\n', pos);
          if (tEol < 0) return undefined;
          const empty = tEol === pos;
          pos = tEol + 2;
          if (empty) return { request: { ...base, framing: 'chunked', body: Buffer.concat(parts) }, consumed: pos };
        }
      }
      if (buf.length < pos + size + 2) return undefined;
      if (buf[pos + size] !== 0x0d || buf[pos + size + 1] !== 0x0a) throw new ParseError('chunk not followed by CRLF');
      parts.push(buf.subarray(pos, pos + size));
      pos += size + 2;
    }
  }
  if (cl.length > 0) {
    if (cl.some((v) => v !== cl[0]) || !/^\d{1,15}$/.test(cl[0]!)) throw new ParseError(`bad Content-Length ${JSON.stringify(cl)}`);
    const n = Number(cl[0]);
    if (buf.length < pos + n) return undefined;
    return { request: { ...base, framing: 'content-length', body: Buffer.from(buf.subarray(pos, pos + n)) }, consumed: pos + n };
  }
  return { request: { ...base, framing: 'none', body: Buffer.alloc(0) }, consumed: pos };
}

function defaultResponse(req: RecordedRequest, index: number): string {
  const body = JSON.stringify({ ok: true, request: index, method: req.method, target: req.target });
  const head = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
  // A response to HEAD carries the length of the body it would have, and no body.
  return req.method === 'HEAD' ? head : head + body;
}

export async function startUpstreamRecorder(path: string, opts: RecorderOptions = {}): Promise<UpstreamRecorder> {
  mkdirSync(dirname(path), { recursive: true });
  rmSync(path, { force: true });
  let connections = 0;
  let requests: RecordedRequest[] = [];
  let parseErrors: string[] = [];
  // Per connection index: the bytes received since the last reset.
  let rawByConn = new Map<number, Buffer[]>();
  const sockets = new Set<Socket>();
  const pendingBySocket = new Map<Socket, number>();
  let respond = opts.respond;
  let connSeq = 0;

  const server: Server = createServer((socket) => {
    const id = connSeq++;
    connections++;
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      pendingBySocket.delete(socket);
    });
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      const list = rawByConn.get(id) ?? [];
      list.push(chunk);
      rawByConn.set(id, list);
      if (opts.mode === 'raw') {
        socket.write(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        let parsed: Parsed | undefined;
        try {
          parsed = parseRequest(pending);
        } catch (e) {
          parseErrors.push((e as Error).message);
          socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
          pending = Buffer.alloc(0);
          return;
        }
        pendingBySocket.set(socket, pending.length);
        if (!parsed) return;
        pending = pending.subarray(parsed.consumed);
        pendingBySocket.set(socket, pending.length);
        const req: RecordedRequest = { conn: id, ...parsed.request };
        requests.push(req);
        const index = requests.length - 1;
        socket.write((respond ?? defaultResponse)(req, index));
        if (req.all('connection').some((v) => /\bclose\b/i.test(v))) {
          socket.end();
          return;
        }
      }
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(path, () => ok());
  });

  return {
    path,
    get connections() {
      return connections;
    },
    get requests() {
      return requests;
    },
    get parseErrors() {
      return parseErrors;
    },
    leftover: () => [...pendingBySocket.values()].reduce((a, b) => a + b, 0),
    raw: () => Buffer.concat([...rawByConn.keys()].sort((a, b) => a - b).flatMap((k) => rawByConn.get(k) ?? [])),
    rawOf: (conn) => Buffer.concat(rawByConn.get(conn) ?? []),
    reset() {
      connections = 0;
      requests = [];
      parseErrors = [];
      rawByConn = new Map();
    },
    respondWith(fn) {
      respond = fn;
    },
    async waitForRequests(n, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      while (requests.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return requests;
    },
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((ok) => {
        for (const s of sockets) s.destroy();
        server.close(() => ok());
      }),
  };
}

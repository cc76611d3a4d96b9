// CONNECT tunnels read their upstream into one buffer shared by every tunnel: bytes must arrive intact
// when clients read slowly (the gateway's TLS writes queue up) while other tunnels keep reading.
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inOneHour, mintRaw, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';
import { connectTunnel, unixService, type TunnelEnd, type UnixService } from './support/tunnelPeers.ts';

const MiB = 1 << 20;
const PAYLOAD_BYTES = 12 * MiB;
const TUNNELS = 4;

let h: Harness;
let alice: TestClientCertificate;
let token: string;
let source: UnixService;
/** sha256 of what the source sent on each connection. */
const sent: string[] = [];

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  h = await startHarness({
    routes: `  - name: source
    protocols: [tcp]
    upstream: unix:run/source.sock
    policy: |
      allow if user($u), protocol("tcp");
`,
  });
  alice = await h.pki.client('alice');
  token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  // Speaks first, at once and as fast as the gateway takes it: distinct random bytes per connection.
  source = await unixService(join(h.dir, 'run', 'source.sock'), (socket) => {
    const payload = randomBytes(PAYLOAD_BYTES);
    sent.push(sha(payload));
    socket.end(payload);
  });
});

afterAll(async () => {
  source?.close();
  await h?.stop();
});

/** Reads the whole tunnel, pausing `stallMs` after every `every` bytes (0: never); resolves with the digest. */
function drain(end: TunnelEnd, every: number, stallMs: number): Promise<{ bytes: number; sha: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  let sinceStall = 0;
  end.onData((chunk) => {
    hash.update(chunk);
    bytes += chunk.length;
    sinceStall += chunk.length;
    if (every > 0 && sinceStall >= every) {
      sinceStall = 0;
      end.pause();
      void wait(stallMs).then(() => end.resume());
    }
  });
  return end.peerEnded.then(() => {
    end.end();
    return { bytes, sha: hash.digest('hex') };
  });
}

it('carries every byte intact to slow readers while other tunnels read through the same buffer', async () => {
  const ends = await Promise.all(
    Array.from({ length: TUNNELS }, async () => {
      const t = await connectTunnel(h, alice, 'source:443', { 'Proxy-Authorization': `Bearer ${token}` });
      if (!t.ok) throw new Error(`tunnel refused: ${t.status} ${t.body}`);
      return t.end;
    }),
  );
  // One fast reader keeps the shared buffer busy; the others stall often, so the gateway's TLS writes
  // to them queue up and every read handed to them must be copied before the next one lands.
  const received = await Promise.all(ends.map((end, i) => (i === 0 ? drain(end, 0, 0) : drain(end, 256 << 10 << (i - 1), 15 * i))));
  for (const r of received) expect(r.bytes).toBe(PAYLOAD_BYTES);
  expect(received.map((r) => r.sha).sort()).toEqual([...sent].sort());
  const closes = () => h.audit().filter((r) => r.event === 'tunnel.close');
  await h.waitForAudit(() => closes().length >= TUNNELS);
  for (const close of closes()) expect(close).toMatchObject({ route: 'source', bytesOut: PAYLOAD_BYTES, bytesIn: 0 });
}, 120_000);

// The sender of the UDP stream benchmark, in its own process: 1 KiB datagrams to 127.0.0.1:PORT at RATE per
// second for SECONDS, each starting with its sequence number; prints how many it sent (JSON) when done.
// First a few warm-up datagrams (sequence 2^32-1, not counted) and a second's wait, so a relay's flow is open.
// Usage: node bench/support/udpSender.ts PORT RATE SECONDS [BYTES]
import { createSocket } from 'node:dgram';

const [port, rate, seconds, bytes = 1024] = process.argv.slice(2).map(Number) as [number, number, number, number?];
const socket = createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
const total = Math.round(rate * seconds);
const payload = Buffer.alloc(bytes, 0x5a);
let sent = 0;
let failed = 0;
let started = 0;
socket.connect(port, '127.0.0.1', async () => {
  const warmup = Buffer.alloc(bytes, 0xff);
  for (let i = 0; i < 3; i++) socket.send(warmup);
  await new Promise((r) => setTimeout(r, 1000));
  started = performance.now();
  // Paced by the clock: each tick sends what the rate owes so far, so timer jitter does not lower the rate.
  const tick = () => {
    const owed = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
    while (sent < owed) {
      const datagram = Buffer.from(payload);
      datagram.writeUInt32BE(sent, 0);
      socket.send(datagram, (err) => {
        if (err) failed += 1;
      });
      sent += 1;
    }
    if (sent < total) setTimeout(tick, 1);
    else setTimeout(() => {
      process.stdout.write(JSON.stringify({ sent, failed, seconds: (performance.now() - started) / 1000 }) + '\n');
      socket.close();
    }, 50);
  };
  tick();
});

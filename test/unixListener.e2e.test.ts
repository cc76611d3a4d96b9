// The gateway can also listen on a UNIX socket (for a front proxy on the same host): same mTLS,
// same routing and policy, with the socket file's mode as configured.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startEchoService, type EchoReply } from '../src/demo/echoService.ts';
import { curl, inOneHour, mintRaw, runGatehouse, startHarness, type Harness } from './support/gatewayHarness.ts';
import type { TestClientCertificate } from './support/pki.ts';

let h: Harness;
let alice: TestClientCertificate;
let echo: Server;

beforeAll(async () => {
  h = await startHarness({
    extraListen: '  - unix: run/gatehouse.sock\n    mode: "0600"\n',
    routes: '  - name: demo\n    path: /demo/\n    upstream: unix:run/demo.sock\n    policy: |\n      allow if user($u);\n',
  });
  alice = await h.pki.client('alice');
  echo = await startEchoService(join(h.dir, 'run', 'demo.sock'));
});

afterAll(async () => {
  echo?.close();
  await h?.stop();
});

it('serves mTLS on a UNIX socket with the configured mode, audited with source "unix"', async () => {
  const sock = join(h.dir, 'run', 'gatehouse.sock');
  expect(statSync(sock).isSocket()).toBe(true);
  expect(statSync(sock).mode & 0o777).toBe(0o600);
  const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  const res = await curl(h, '/demo/via-unix', { client: alice, token, args: ['--unix-socket', sock] });
  expect(res.status).toBe(200);
  expect((JSON.parse(res.body) as EchoReply).identity.user).toBe('alice');
  const r = await h.waitForAudit((a) => a.event === 'request' && a.path === '/demo/via-unix');
  expect(r).toMatchObject({ source: 'unix', decision: 'allow', status: 200, client: { cn: 'alice' } });
  const refused = await curl(h, '/demo/via-unix', { token, args: ['--unix-socket', sock] });
  expect(refused.status).toBe(0);
});

it('a second start on the same sockets fails and leaves the running gateway and service their sockets', async () => {
  const sock = join(h.dir, 'run', 'gatehouse.sock');
  const demoSock = join(h.dir, 'run', 'demo.sock');
  const before = { gateway: statSync(sock).ino, demo: statSync(demoSock).ino };
  // The demo's echo service started twice (as `npm start` twice does).
  await expect(startEchoService(demoSock)).rejects.toThrow(/in use by another process/);
  // The gateway started twice on the same UNIX listener (its own audit file, so the first's chain is untouched).
  const second = join(h.dir, 'routes-second.yaml');
  writeFileSync(second, readFileSync(join(h.dir, 'routes.yaml'), 'utf8').replace('file: audit/audit.log', 'file: audit/second.log'));
  const run = await runGatehouse(['serve', '--config', second], { cwd: h.dir });
  expect(run.code).not.toBe(0);
  expect(run.stderr).toMatch(/gatehouse\.sock is in use by another process/);
  expect({ gateway: statSync(sock).ino, demo: statSync(demoSock).ino }).toEqual(before);
  const token = mintRaw(h.rootKey.privateKey, `user("alice"); check if time($t), $t <= ${inOneHour()};`);
  const res = await curl(h, '/demo/still-there', { client: alice, token, args: ['--unix-socket', sock] });
  expect(res.status).toBe(200);
});

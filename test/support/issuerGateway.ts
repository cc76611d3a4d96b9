// A gateway that runs the issuer, with the real test OpenID provider behind it, and the device login as a
// terminal does it over the gateway's mTLS listener (curl with the user's certificate, JSON bodies).
import { mkdtempSync } from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEchoService } from '../../src/demo/echoService.ts';
import type { IssuerKey } from '../../src/issuer/issuerKey.ts';
import { curlReply, startHarness, type CurlReply, type Harness, type HarnessOptions } from './gatewayHarness.ts';
import { writeIssuerKey } from './issuerFixtures.ts';
import { completeInteraction, startOidcProvider, type OidcProviderOptions, type TestOidcProvider } from './oidcProvider.ts';
import type { TestAccount } from './oidcProviderAccounts.ts';
import { makeTestPki, type TestClientCertificate, type TestPki } from './pki.ts';

/** A terminal's credentials: a certificate and key files, or none (a certificate login, issuer.certificates). */
export type LoginClient = Pick<TestClientCertificate, 'certPath' | 'keyPath'> | undefined;

export const LOGIN = '/.well-known/gatehouse/login';

/** alice's notebook behind a UNIX socket (run/demo.sock), for tokens of the `idp` issuer only. */
export const ISSUED_NOTEBOOK_ROUTE = `  - name: notebook
    path: /~{user}/notebook/
    upstream: unix:run/demo.sock
    policy: |
      allow if user($u), param("user", $u), signer("idp");
`;

export interface IssuerGateway {
  h: Harness;
  idp: TestOidcProvider;
  key: IssuerKey;
  stop(): Promise<void>;
}

export interface IssuerGatewayOptions extends Pick<HarnessOptions, 'routes' | 'serveArgs'> {
  /** More lines under `issuer:` (indented by 2), e.g. `  refreshLimit: 5m`; a function gets the gateway's PKI (its CA as an issuing CA). */
  issuerExtra?: string | ((pki: TestPki) => string);
  provider?: OidcProviderOptions;
  /** issuer.provider.timeoutSeconds (default: the gateway's 10 s). */
  providerTimeoutSeconds?: number;
}

/**
 * The provider first (it serves with the gateway's PKI), then the gateway with `issuer:` naming it and
 * `authz.issuers` trusting the issuer's key. Rules: hpc may have the notebook route (8 h at most), staff any route.
 */
export async function startIssuerGateway(options: IssuerGatewayOptions): Promise<IssuerGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-issuer-gw-'));
  const pki = await makeTestPki(join(dir, 'certs'));
  const idp = await startOidcProvider(pki, { deviceIntervalSeconds: 1, ...options.provider });
  const key = writeIssuerKey(dir);
  const issuer = `issuer:
  name: idp
  keyId: 1
  signingKey: ${join(dir, 'issuer.key')}
  provider:
    url: ${idp.issuer}
    clientId: ${idp.deviceClientId}
    ca: ${pki.caCertPath}
${options.providerTimeoutSeconds !== undefined ? `    timeoutSeconds: ${options.providerTimeoutSeconds}\n` : ''}  groups:
    hpc: { routes: [notebook], publish: ['*'], maxTtl: 8h }
    staff: { routes: ['*'] }
${typeof options.issuerExtra === 'function' ? options.issuerExtra(pki) : options.issuerExtra ?? ''}`;
  try {
    const h = await startHarness({ routes: options.routes, pki, authzExtra: `  issuers:\n    idp:\n      keyId: 1\n      publicKey: ${key.publicKey}\n`, extraTop: issuer, ...(options.serveArgs && { serveArgs: options.serveArgs }) });
    return {
      h,
      idp,
      key,
      async stop() {
        await h.stop();
        await idp.stop();
      },
    };
  } catch (error) {
    await idp.stop();
    throw error;
  }
}

export interface LoginReply extends CurlReply {
  json: Record<string, unknown>;
}

/** POSTs `body` as JSON to a login endpoint with `client`'s certificate (and `token` as bearer), by curl. */
export async function postLogin(h: Harness, client: LoginClient, path: string, body: unknown, token?: string): Promise<LoginReply> {
  const args = ['-X', 'POST', '-H', 'content-type: application/json', '--data-binary', JSON.stringify(body)];
  if (token !== undefined) args.push('-H', `authorization: Bearer ${token}`);
  const reply = await curlReply(h, client, `${LOGIN}${path}`, args);
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(reply.body) as Record<string, unknown>;
  } catch {
    // not JSON: the test reads reply.body
  }
  return { ...reply, json };
}

export interface StartedLogin {
  login: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  expiresIn: number;
  interval: number;
}

export async function startDeviceLogin(h: Harness, client: LoginClient, body: Record<string, unknown> = {}): Promise<StartedLogin> {
  const reply = await postLogin(h, client, '/device', body);
  if (reply.status !== 200) throw new Error(`device login start answered ${reply.status}: ${reply.body}`);
  return reply.json as unknown as StartedLogin;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls as RFC 8628 says (every `interval`, 5 s more after slow_down) until an answer other than authorization_pending. */
export async function pollDeviceLogin(h: Harness, client: LoginClient, started: StartedLogin, maxPolls = 30): Promise<LoginReply> {
  let interval = started.interval;
  for (let poll = 0; poll < maxPolls; poll++) {
    await sleep(interval * 1000);
    const reply = await postLogin(h, client, '/device/token', { login: started.login });
    if (reply.status === 202) continue;
    if (reply.status === 429) {
      interval = Number(reply.json.interval) || interval + 5;
      continue;
    }
    return reply;
  }
  throw new Error(`the device login was still pending after ${maxPolls} polls`);
}

/** The whole device login of `account` at the provider, from the terminal holding `client`; the final answer. */
export async function deviceLogin(gw: IssuerGateway, client: LoginClient, account: TestAccount, body: Record<string, unknown> = {}): Promise<LoginReply> {
  const started = await startDeviceLogin(gw.h, client, body);
  await completeInteraction(gw.idp, started.verificationUriComplete ?? '', account);
  return pollDeviceLogin(gw.h, client, started);
}

export interface IssuedNotebook {
  gw: IssuerGateway;
  aliceCert: TestClientCertificate;
  bobCert: TestClientCertificate;
  stop(): Promise<void>;
}

/** An issuer gateway with alice's notebook (ISSUED_NOTEBOOK_ROUTE) served, and alice's and bob's certificates. */
export async function startIssuedNotebook(options: Omit<IssuerGatewayOptions, 'routes'> = {}): Promise<IssuedNotebook> {
  const gw = await startIssuerGateway({ routes: ISSUED_NOTEBOOK_ROUTE, ...options });
  let echo: Server | undefined;
  try {
    echo = await startEchoService(join(gw.h.dir, 'run', 'demo.sock'), 'demo');
    return {
      gw,
      aliceCert: await gw.h.pki.client('alice'),
      bobCert: await gw.h.pki.client('bob'),
      async stop() {
        echo?.close();
        await gw.stop();
      },
    };
  } catch (error) {
    echo?.close();
    await gw.stop();
    throw error;
  }
}

/** The file's issued notebook: started before its tests, stopped after them; read its parts inside tests only. */
export function useIssuedNotebook(options: Omit<IssuerGatewayOptions, 'routes'> = {}): Omit<IssuedNotebook, 'stop'> {
  let site: IssuedNotebook | undefined;
  beforeAll(async () => {
    site = await startIssuedNotebook(options);
  }, 60_000);
  afterAll(async () => {
    await site?.stop();
  });
  const started = (): IssuedNotebook => {
    if (site === undefined) throw new Error('the issued notebook is not started (read it inside a test)');
    return site;
  };
  return {
    get gw() {
      return started().gw;
    },
    get aliceCert() {
      return started().aliceCert;
    },
    get bobCert() {
      return started().bobCert;
    },
  };
}

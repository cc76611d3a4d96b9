// The demo's preparation: makes whatever the shipped routes.yaml needs and is missing (dev PKI,
// token root key, revocation list, a fresh demo token) before `gatehouse demo` serves it.
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { parse } from 'yaml';
import { initPki, issueClientCertificate } from '../pki/index.ts';
import { mintToken } from '../token/mintToken.ts';
import { readPrivateKey, writeKeyPair } from '../token/keyFiles.ts';
import { socketDirectory } from '../configCheck/configWarnings.ts';

const DEMO_USER = 'demo';

export interface DemoLayout {
  certs: string;
  rootKey: string;
  rootPub: string;
  revocationList: string;
  token: string;
  auditFile: string;
  clientName: string;
  echoSocket: string;
  /** Directories the config's unix: upstreams put sockets in (for a template, its fixed part), such as run/users. */
  socketDirs: string[];
  /** The demo route's path prefix, e.g. `/demo/`. */
  routePath: string;
}

/** Reads just enough of the raw YAML (it may not validate yet: its files are what we create). */
function layoutOf(configFile: string): DemoLayout {
  const dir = dirname(resolve(configFile));
  const raw = parse(readFileSync(configFile, 'utf8')) as {
    tls?: { clientCa?: string };
    authz?: { rootKey?: string; revocationList?: string };
    audit?: { file?: string };
    routes?: Array<{ name?: string; path?: string; upstream?: string }>;
  };
  const certs = resolve(dir, dirname(raw.tls?.clientCa ?? 'certs/ca.crt'));
  const rootPub = resolve(dir, raw.authz?.rootKey ?? 'certs/token-root.pub');
  const demo = raw.routes?.find((r) => r.name === 'demo');
  if (!demo?.upstream?.startsWith('unix:')) throw new Error(`${configFile} has no route "demo" with a unix: upstream`);
  return {
    certs,
    rootKey: rootPub.replace(/\.pub$/, '') + '.key',
    rootPub,
    revocationList: resolve(dir, raw.authz?.revocationList ?? 'certs/revoked.txt'),
    token: join(certs, `${DEMO_USER}.token`),
    auditFile: resolve(dir, raw.audit?.file ?? 'audit/audit.log'),
    clientName: DEMO_USER,
    echoSocket: resolve(dir, demo.upstream.slice(5)),
    // Only inside the demo's own directory: the demo creates nothing elsewhere on the machine.
    socketDirs: (raw.routes ?? []).flatMap((r) => (r.upstream?.startsWith('unix:') ? [socketDirectory(r.upstream, dir).dir] : [])).filter((d) => !isAbsolute(relative(dir, d)) && !relative(dir, d).startsWith('..')),
    routePath: demo.path ?? '/demo/',
  };
}

/** `say` reports each file it creates. */
export async function prepareDemo(configFile: string, say: (message: string) => void): Promise<DemoLayout> {
  const l = layoutOf(configFile);
  const pki = await initPki({ dir: l.certs });
  if (pki.changed) say(`development PKI written to ${l.certs}`);
  const clientCert = join(l.certs, 'clients', `${l.clientName}.crt`);
  const bind = { clientCn: l.clientName };
  if (!existsSync(clientCert) || pki.caCreated) {
    await issueClientCertificate({ dir: l.certs, name: l.clientName, force: true });
    say(`client certificate for "${l.clientName}" written to ${clientCert}`);
  }
  if (!existsSync(l.rootKey) || !existsSync(l.rootPub)) {
    const written = writeKeyPair(l.rootKey, l.rootPub, { force: true });
    if (!written.ok) throw new Error(written.error.message);
    say(`token root key written to ${l.rootKey} (public: ${l.rootPub})`);
  }
  if (!existsSync(l.revocationList)) writeFileSync(l.revocationList, '# revoked token ids, one per line (gatehouse token revoke)\n', { mode: 0o644 });
  const key = readPrivateKey(l.rootKey);
  if (!key.ok) throw new Error(key.error.message);
  // A fresh demo token at every start: short-lived, limited to the demo route, bound to the demo certificate.
  const token = mintToken({ privateKey: key.value, user: DEMO_USER, groups: ['demo'], ttlSeconds: 12 * 3600, routes: ['demo'], ...bind });
  if (!token.ok) throw new Error(token.error.message);
  writeFileSync(l.token, token.value + '\n', { mode: 0o600 });
  mkdirSync(dirname(l.echoSocket), { recursive: true });
  // The per-user socket tree of the shipped config (run/users), so the demo starts without a warning about it.
  for (const socketDir of l.socketDirs) mkdirSync(socketDir, { recursive: true });
  return l;
}

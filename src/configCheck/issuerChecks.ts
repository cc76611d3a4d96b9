// What `gatehouse check` says about signers beyond the schema: authz.issuers keys parse and are not the
// root key; `issuer:` names existing routes, signs with a key of its own, and this gateway trusts it.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { ConfigIssue } from '../config/configError.ts';
import { record, text } from './routeChecks.ts';
import { privateKeyModeWarning } from '../token/keyFiles.ts';
import { readIssuerKey } from '../issuer/issuerKey.ts';
import { parsePublicKey } from '../token/rootKey.ts';

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Errors and warnings for `issuer:` in the raw document (`configDir`: the config file's directory). */
export function issuerChecks(data: unknown, configDir: string): { errors: ConfigIssue[]; warnings: ConfigIssue[] } {
  const errors: ConfigIssue[] = [];
  const warnings: ConfigIssue[] = [];
  const root = record(data);
  const authz = record(root?.authz);
  const rootKeyFile = text(authz?.rootKey);
  const rootKey = rootKeyFile === undefined ? undefined : readText(path.resolve(configDir, rootKeyFile));
  for (const [name, raw] of Object.entries(record(authz?.issuers) ?? {})) {
    const value = text(record(raw)?.publicKey);
    if (value === undefined) continue;
    const parsed = parsePublicKey(value, 'publicKey');
    if (!parsed.ok) errors.push({ path: ['authz', 'issuers', name, 'publicKey'], message: parsed.reason });
    else parsed.key.free();
    if (rootKey !== undefined && value.toLowerCase() === rootKey.toLowerCase()) errors.push({ path: ['authz', 'issuers', name, 'publicKey'], message: 'this is the root key: an issuer needs a key of its own' });
  }
  const issuer = record(root?.issuer);
  if (root === undefined || issuer === undefined) return { errors, warnings };

  const routeNames = new Set((Array.isArray(root.routes) ? root.routes : []).map((r) => text(record(r)?.name)).filter((n) => n !== undefined));
  for (const [group, raw] of Object.entries(record(issuer.groups) ?? {})) {
    const routes = record(raw)?.routes;
    if (!Array.isArray(routes)) continue;
    routes.forEach((route, index) => {
      if (typeof route === 'string' && route !== '*' && !routeNames.has(route)) {
        errors.push({ path: ['issuer', 'groups', group, 'routes', index], message: `no route named ${JSON.stringify(route)} in routes` });
      }
    });
  }

  const name = text(issuer.name);
  const keyId = typeof issuer.keyId === 'number' ? issuer.keyId : undefined;
  const signingKey = text(issuer.signingKey);
  let publicKey: string | undefined;
  if (signingKey !== undefined && name !== undefined && keyId !== undefined) {
    const file = path.resolve(configDir, signingKey);
    const key = readIssuerKey(file, { name, keyId }, rootKey);
    if (!key.ok) errors.push({ path: ['issuer', 'signingKey'], message: key.error.message });
    else {
      publicKey = key.value.publicKey;
      key.value.privateKey.free();
      const mode = privateKeyModeWarning(file);
      if (mode !== undefined) warnings.push({ path: ['issuer', 'signingKey'], message: mode.replace(/^warning: /, ''), warning: true });
    }
  }
  for (const file of ['clientSecretFile', 'ca'] as const) {
    const value = text(record(issuer.provider)?.[file]);
    if (value !== undefined && readText(path.resolve(configDir, value)) === undefined) {
      errors.push({ path: ['issuer', 'provider', file], message: `cannot read ${path.resolve(configDir, value)}` });
    }
  }

  // The gateway accepts the issuer's tokens only when authz.issuers lists the same name, key id and key.
  const trusted = name === undefined ? undefined : record(record(authz?.issuers)?.[name]);
  if (name !== undefined && keyId !== undefined && trusted === undefined) {
    warnings.push({ path: ['issuer', 'name'], message: `this gateway refuses the tokens its own issuer signs: add authz.issuers.${name} with keyId ${keyId}${publicKey ? ` and publicKey ${publicKey}` : ''}`, warning: true });
  } else if (trusted !== undefined) {
    if (trusted.keyId !== keyId) errors.push({ path: ['authz', 'issuers', name ?? '', 'keyId'], message: `issuer ${name} signs with key id ${keyId}, not ${String(trusted.keyId)}` });
    if (publicKey !== undefined && typeof trusted.publicKey === 'string' && trusted.publicKey.toLowerCase() !== publicKey.toLowerCase()) {
      errors.push({ path: ['authz', 'issuers', name ?? '', 'publicKey'], message: `not the public key of issuer.signingKey (${publicKey}): this gateway would refuse every token its issuer signs` });
    }
  }
  errors.push(...issuingCaIssues(record(issuer.certificates), configDir));
  if (text(record(issuer.certificate)?.field) === 'none') {
    warnings.push({ path: ['issuer', 'certificate', 'field'], message: 'any login may obtain a token bound to any certificate presented: the IdP user is not matched to the certificate holder', warning: true });
  }
  return { errors, warnings };
}

/** issuer.certificates: the CA certificate is a CA's, its key an ECDSA P-256 key of that CA, readable by the issuer alone. */
function issuingCaIssues(certificates: Record<string, unknown> | undefined, configDir: string): ConfigIssue[] {
  const certFile = text(certificates?.ca);
  const keyFile = text(certificates?.caKey);
  if (certFile === undefined || keyFile === undefined) return [];
  const at = (key: 'ca' | 'caKey') => ['issuer', 'certificates', key];
  const [certPath, keyPath] = [path.resolve(configDir, certFile), path.resolve(configDir, keyFile)];
  const [certPem, keyPem] = [readText(certPath), readText(keyPath)];
  if (certPem === undefined) return [{ path: at('ca'), message: `cannot read ${certPath}` }];
  if (keyPem === undefined) return [{ path: at('caKey'), message: `cannot read ${keyPath}` }];
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch {
    return [{ path: at('ca'), message: `${certPath} is not a PEM certificate` }];
  }
  if (!cert.ca) return [{ path: at('ca'), message: `${certPath} is not a CA certificate` }];
  if (!(Date.parse(cert.validTo) > Date.now())) return [{ path: at('ca'), message: `${certPath} expired on ${cert.validTo}` }];
  const mode = privateKeyModeWarning(keyPath);
  if (mode !== undefined) return [{ path: at('caKey'), message: `${mode.replace(/^warning: /, '')}: the gateway refuses to sign with it` }];
  try {
    const key = createPrivateKey(keyPem);
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') return [{ path: at('caKey'), message: `${keyPath} is not an ECDSA P-256 key` }];
    if (!cert.checkPrivateKey(key)) return [{ path: at('caKey'), message: `${keyPath} is not the key of ${certPath}` }];
  } catch {
    return [{ path: at('caKey'), message: `${keyPath} is not a PEM private key` }];
  }
  return [];
}

// Claim rules, an issuer key and IdP claims as the issuer tests use them: one place, so the unit
// tests and the end-to-end tests issue tokens under the same rules.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { issuerSettingsSchema, type IssuerSettings } from '../../src/config/issuerSettings.ts';
import { readIssuerKey, type IssuerKey } from '../../src/issuer/issuerKey.ts';
import { generateRootKey } from '../../src/token/keyFiles.ts';

export const IDP_ISSUER = 'https://idp.test/realms/site';

/** The site's rules: hpc may reach the notebook routes and publish, staff any route; hpc tokens live at most 8 h. */
export function testIssuerRules(overrides: Record<string, unknown> = {}): IssuerSettings {
  return issuerSettingsSchema.parse({
    name: 'idp',
    keyId: 1,
    signingKey: 'certs/issuer.key',
    provider: { url: IDP_ISSUER, clientId: 'gatehouse' },
    groups: {
      hpc: { routes: ['notebook', 'self-service'], publish: ['*'], maxTtl: '8h' },
      staff: { routes: ['*'] },
    },
    ...overrides,
  });
}

/** Writes a fresh issuer key to `<dir>/issuer.key` (mode 0600) and reads it back as the issuer does. */
export function writeIssuerKey(dir: string, rootPublicKey?: string): IssuerKey {
  const keys = generateRootKey();
  const file = join(dir, 'issuer.key');
  writeFileSync(file, `${keys.privateKey}\n`, { mode: 0o600 });
  const key = readIssuerKey(file, { name: 'idp', keyId: 1 }, rootPublicKey);
  if (!key.ok) throw new Error(key.error.message);
  return key.value;
}

/** ID token claims of a test user (the subject is opaque, as real IdPs make it). */
export function claimsOf(user: string, groups: string[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { iss: IDP_ISSUER, sub: `subject-of-${user}`, aud: 'gatehouse', preferred_username: user, email: `${user}@example.org`, groups, ...extra };
}

export interface IssuerBlock {
  /** The issuer key file (writeIssuerKey). */
  signingKey: string;
  providerUrl: string;
  clientId: string;
  /** The provider's CA file, when it is a private one. */
  providerCa?: string;
  /** issuer.certificates: the issuing CA's certificate and key files, and their lifetime. */
  certificates?: { ca: string; caKey: string; ttl?: string };
  /** issuer.ttl (default 12h). */
  ttl?: string;
  /** Routes group hpc may receive (default notebook); staff gets any. */
  routes?: string[];
}

/** The `issuer:` block of a test gateway's routes.yaml under the rules of testIssuerRules. */
export function issuerYaml(block: IssuerBlock): string {
  const certificates = block.certificates && `  certificates:\n    ca: ${block.certificates.ca}\n    caKey: ${block.certificates.caKey}\n${block.certificates.ttl ? `    ttl: ${block.certificates.ttl}\n` : ''}`;
  return `issuer:
  name: idp
  keyId: 1
  signingKey: ${block.signingKey}
${block.ttl ? `  ttl: ${block.ttl}\n` : ''}  provider:
    url: ${block.providerUrl}
    clientId: ${block.clientId}
${block.providerCa ? `    ca: ${block.providerCa}\n` : ''}  groups:
    hpc: { routes: [${(block.routes ?? ['notebook']).join(', ')}], publish: ['*'], maxTtl: 8h }
    staff: { routes: ['*'] }
${certificates ?? ''}`;
}

// The test provider's users and settings, shared by the provider process and the tests: alice (hpc,
// staff) and bob (hpc, students), each with a password and an opaque subject, as a site's IdP has them.
export interface TestAccount {
  sub: string;
  username: string;
  password: string;
  name: string;
  email: string;
  groups: string[];
}

export const testAccounts: readonly TestAccount[] = [
  { sub: '5f0c2a4e-alice', username: 'alice', password: 'alice-password', name: 'Alice Example', email: 'alice@example.org', groups: ['hpc', 'staff'] },
  { sub: '9b7d1e33-bob', username: 'bob', password: 'bob-password', name: 'Bob Example', email: 'bob@example.org', groups: ['hpc', 'students'] },
];

/** What the provider process is started with (one JSON argument). */
export interface OidcProviderSettings {
  tlsCert: string;
  tlsKey: string;
  port?: number;
  deviceClientId: string;
  webClientId: string;
  webClientSecret: string;
  redirectUris: string[];
  idTokenSeconds?: number;
  sessionSeconds?: number;
  /** The `interval` of device authorization answers (RFC 8628; absent: the provider names none, clients use 5 s). */
  deviceIntervalSeconds?: number;
}

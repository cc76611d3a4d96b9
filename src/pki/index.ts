// The development PKI's public surface: `gatehouse pki init` and `gatehouse pki client`, and the
// typed errors they fail with. Other modules import from here.
export { initPki, loadCa, CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE, DEFAULT_SERVER_DAYS } from './devCa.ts';
export type { InitPkiOptions, PkiInitResult, PkiFileReport, PkiFileStatus } from './devCa.ts';
export { issueClientCertificate, isValidClientName, CLIENTS_DIR, DEFAULT_CLIENT_DAYS } from './clientCertificates.ts';
export type { IssueClientOptions, IssuedClientCertificate } from './clientCertificates.ts';
export { PkiError, isPkiError } from './errors.ts';
export type { PkiErrorCode } from './errors.ts';
export { issueInstanceCertificate, INSTANCES_DIR } from './instanceCertificates.ts';
export type { IssueInstanceOptions, IssuedInstanceCertificate } from './instanceCertificates.ts';

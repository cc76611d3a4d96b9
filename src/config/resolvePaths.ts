// Makes every file and socket path in a validated config absolute, against the config file's directory,
// so later stages never depend on the working directory. Route templates such as `{user}` stay intact.
import path from 'node:path';
import type { GatewayConfig } from './schema.ts';

function resolveUpstream(upstream: string, dir: string): string {
  return upstream.startsWith('unix:') ? `unix:${path.resolve(dir, upstream.slice('unix:'.length))}` : upstream;
}

export function resolvePaths(config: GatewayConfig, dir: string): GatewayConfig {
  const at = (p: string): string => path.resolve(dir, p);
  return {
    ...config,
    listen: config.listen.map((l) => (l.unix === undefined ? { ...l } : { ...l, unix: at(l.unix) })),
    tls: { ...config.tls, cert: at(config.tls.cert), key: at(config.tls.key), clientCa: at(config.tls.clientCa), ...(config.tls.crl === undefined ? {} : { crl: at(config.tls.crl) }), ...(config.tls.ticketKeys === undefined ? {} : { ticketKeys: at(config.tls.ticketKeys) }) },
    authz: {
      ...config.authz,
      rootKey: at(config.authz.rootKey),
      ...(config.authz.revocationList === undefined ? {} : { revocationList: at(config.authz.revocationList) }),
    },
    audit: {
      ...config.audit,
      file: at(config.audit.file),
      ...(config.audit.signingKey === undefined ? {} : { signingKey: at(config.audit.signingKey) }),
      ...(config.audit.checkpointFile === undefined ? {} : { checkpointFile: at(config.audit.checkpointFile) }),
      witnesses: config.audit.witnesses.map((w) => ({ ...w, ...(w.ca && { ca: at(w.ca) }), ...(w.cert && { cert: at(w.cert) }), ...(w.key && { key: at(w.key) }) })),
      ...(config.audit.syslog?.tls === undefined ? {} : { syslog: { ...config.audit.syslog, tls: { ...config.audit.syslog.tls, ca: at(config.audit.syslog.tls.ca), ...(config.audit.syslog.tls.cert && { cert: at(config.audit.syslog.tls.cert) }), ...(config.audit.syslog.tls.key && { key: at(config.audit.syslog.tls.key) }) } } }),
    },
    routes: config.routes.map((r) => ({ ...r, upstream: resolveUpstream(r.upstream, dir) })),
    ...(config.cluster && { cluster: { ...config.cluster, ...(config.cluster.peerCert !== undefined && { peerCert: at(config.cluster.peerCert) }), ...(config.cluster.peerKey !== undefined && { peerKey: at(config.cluster.peerKey) }) } }),
    ...(config.issuer && {
      issuer: { ...config.issuer, signingKey: at(config.issuer.signingKey), provider: { ...config.issuer.provider, ...(config.issuer.provider.clientSecretFile !== undefined && { clientSecretFile: at(config.issuer.provider.clientSecretFile) }), ...(config.issuer.provider.ca !== undefined && { ca: at(config.issuer.provider.ca) }) }, ...(config.issuer.certificates && { certificates: { ...config.issuer.certificates, ca: at(config.issuer.certificates.ca), caKey: at(config.issuer.certificates.caKey) } }) },
    }),
  };
}

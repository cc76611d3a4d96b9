// The listeners' TLS material from `tls:`: certificate, key, client CA, the optional client CRL and session-
// ticket key, read at start and on reload, with the CRL file watched so a new list applies to the next handshake.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { GatewayConfig } from '../config/schema.ts';
import type { TlsSettings } from './tlsSettings.ts';
import type { CertificateRef, CrlLoad, CrlSnapshot } from './clientCrl.ts';
import { processTicketKey, readTicketKeyFile, sessionContextOf } from './ticketKeys.ts';

type TlsConfig = GatewayConfig['tls'];

export interface TlsExpiry {
  /** notAfter of the server certificate, and of the earliest-expiring client CA. */
  serverCert: Date;
  clientCa: Date;
  /** The earliest nextUpdate of the CRLs; absent without `tls.crl` or when no list states one. */
  crlNextUpdate?: Date;
}

export interface TlsMaterial {
  /** What the listeners should use now. */
  settings(): TlsSettings;
  expiry(): TlsExpiry;
  /** Which session-ticket key the listeners use: `sha256:…` of the shared `tls.ticketKeys`, or `process-local`. */
  ticketKeyId(): string;
  /** Reads `next` (a config reload); throws, keeping the current material, when it cannot be used. */
  reload(next: TlsConfig): Promise<void>;
  /** Re-reads the CRL now (SIGHUP). */
  reloadCrl(): Promise<void>;
  /** The current CRL's check of a client certificate; undefined without `tls.crl`. */
  revocationCheck(): ((certificate: CertificateRef) => boolean) | undefined;
  close(): void;
}

export interface TlsMaterialOptions {
  /** New settings to hand to every listener (the CRL changed, or could no longer be read). */
  apply(settings: TlsSettings): void;
  /** Every CRL read after the first, for the audit log. */
  onCrlReload(result: CrlLoad): void;
}

interface Base {
  config: TlsConfig;
  settings: TlsSettings;
  expiry: Omit<TlsExpiry, 'crlNextUpdate'>;
  ticketKeyId: string;
}

/** Made once: without a shared file, sessions still resume on this process across reloads. */
let ownTicketKey: ReturnType<typeof processTicketKey> | undefined;

function readTicketKey(config: TlsConfig): { key: Buffer; id: string } {
  if (config.ticketKeys === undefined) return (ownTicketKey ??= processTicketKey());
  const read = readTicketKeyFile(config.ticketKeys);
  if (!read.ok) throw new Error(`tls.ticketKeys: ${read.reason}`);
  return read;
}

/** The certificate's expiry. `validToDate` is Node 22+; the string form parses the same on Node 20. */
function notAfter(cert: X509Certificate): Date {
  return new Date(cert.validTo);
}

function readBase(config: TlsConfig): Base {
  const cert = readFileSync(config.cert);
  const ca = readFileSync(config.clientCa);
  const caNotAfter = (ca.toString('latin1').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [])
    .map((pem) => notAfter(new X509Certificate(pem)))
    .reduce((min, d) => (d < min ? d : min), new Date(8.64e15));
  const ticketKey = readTicketKey(config);
  return {
    config,
    settings: { cert, key: readFileSync(config.key), ca, minVersion: config.minVersion, ticketKeys: ticketKey.key },
    expiry: { serverCert: notAfter(new X509Certificate(cert)), clientCa: caNotAfter },
    ticketKeyId: ticketKey.id,
  };
}

async function loadCrl(config: TlsConfig, ca: Buffer): Promise<CrlLoad> {
  // Loaded only when a CRL is configured: the X.509 library is large and nothing else in serve needs it.
  const { loadCrlFile } = await import('./clientCrl.ts');
  return loadCrlFile(config.crl ?? '', ca.toString('latin1'));
}

/** Reads the material; a CRL that cannot be used at start is an error (the gateway does not start). */
export async function openTlsMaterial(config: TlsConfig, options: TlsMaterialOptions): Promise<TlsMaterial> {
  let base = readBase(config);
  let crl: CrlSnapshot | undefined;
  /** Why every client certificate is refused (fail closed: the CRL could not be read on a reload). */
  let refuseClients: string | undefined;
  let stopWatching: (() => void) | undefined;

  const settings = (): TlsSettings => ({
    ...base.settings,
    sessionIdContext: sessionContextOf(base.settings.ca as Buffer, crl?.pem.join('')),
    ...(crl && { crl: crl.pem }),
    ...(refuseClients && { refuseClients }),
  });

  const readCrlNow = async (): Promise<void> => {
    if (!base.config.crl) return;
    const result = await loadCrl(base.config, base.settings.ca as Buffer);
    if (result.ok) {
      crl = result.snapshot;
      refuseClients = undefined;
    } else {
      refuseClients = `client CRL unusable (${result.reason}): refusing every client certificate until it is fixed`;
    }
    options.onCrlReload(result);
    options.apply(settings());
  };

  const watch = async (): Promise<void> => {
    stopWatching?.();
    stopWatching = undefined;
    if (!base.config.crl) return;
    const { watchCrlFile } = await import('./clientCrl.ts');
    stopWatching = watchCrlFile(base.config.crl, () => void readCrlNow());
  };

  if (config.crl) {
    const first = await loadCrl(config, base.settings.ca as Buffer);
    if (!first.ok) throw new Error(`tls.crl: ${first.reason}`);
    crl = first.snapshot;
    await watch();
  }

  return {
    settings,
    expiry: () => ({ ...base.expiry, ...(crl?.nextUpdate && { crlNextUpdate: crl.nextUpdate }) }),
    ticketKeyId: () => base.ticketKeyId,
    async reload(nextConfig) {
      const nextBase = readBase(nextConfig);
      let nextCrl: CrlSnapshot | undefined;
      if (nextConfig.crl) {
        const loaded = await loadCrl(nextConfig, nextBase.settings.ca as Buffer);
        if (!loaded.ok) throw new Error(`tls.crl: ${loaded.reason}`);
        nextCrl = loaded.snapshot;
      }
      base = nextBase;
      crl = nextCrl;
      refuseClients = undefined;
      await watch();
    },
    reloadCrl: readCrlNow,
    revocationCheck: () => crl?.isRevoked,
    close: () => stopWatching?.(),
  };
}


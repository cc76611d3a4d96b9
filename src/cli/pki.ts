// `gatehouse pki init`, `pki client NAME`, `pki instance NAME` and `pki ticket-key FILE`: the development CA, server,
// client and cluster instance certificates, and the shared session-ticket key. Errors are one line and exit code 1.
import { InvalidArgumentError } from 'commander';
import type { Command } from 'commander';
import { DEFAULT_CLIENT_DAYS, DEFAULT_SERVER_DAYS } from '../pki/defaults.ts';
import type { PkiFileReport, PkiInitResult, IssuedClientCertificate, IssuedInstanceCertificate } from '../pki/index.ts';
import { displaySafe } from '../text/displayText.ts';

const DESCRIPTIONS: Record<string, string> = {
  'ca.crt': 'CA certificate: tls.clientCa, and --cacert for clients',
  'ca.key': 'CA private key (mode 0600): signs client certificates, keep it secret',
  'server.crt': 'server certificate: tls.cert',
  'server.key': 'server private key (mode 0600): tls.key',
};

function parseDays(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number of days');
  return Number(value);
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Shell-quotes a path only when it needs it, so printed commands can be pasted. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function fail(command: string, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`gatehouse pki ${command}: ${displaySafe(message.replace(/\s*\n\s*/g, ' '))}\n`);
  process.exitCode = 1;
}

function fileLine(report: PkiFileReport): string {
  const why = report.reason ? ` (${report.reason})` : '';
  return `  ${report.status.padEnd(8)} ${report.path}${why}  ${DESCRIPTIONS[report.file] ?? ''}`.trimEnd();
}

function printInit(result: PkiInitResult): void {
  const out: string[] = [];
  if (!result.changed) {
    out.push(`nothing to do: ${result.dir} already has a CA and a valid server certificate`);
  } else {
    out.push(`development PKI in ${result.dir}:`);
  }
  for (const report of result.files) out.push(fileLine(report));
  const serverWritten = result.files.some((f) => f.file === 'server.crt' && f.status !== 'kept');
  if (serverWritten) out.push(`server certificate names: ${result.serverNames.join(', ')}`);
  if (result.caCreated && result.files.some((f) => f.file === 'ca.crt' && f.status === 'replaced')) {
    out.push('new CA: client certificates issued by the old one no longer work; issue them again');
  }
  out.push(`next: gatehouse pki client NAME --dir ${shellWord(result.dir)}`);
  process.stdout.write(out.join('\n') + '\n');
}

function printClient(name: string, issued: IssuedClientCertificate): void {
  const [cert, key, ca] = [issued.cert, issued.key, issued.caCert].map(shellWord);
  process.stdout.write(
    [
      `client certificate for ${name}:`,
      `  wrote ${issued.cert}`,
      `  wrote ${issued.key}  (private key, mode 0600)`,
      `  serial ${issued.serial}`,
      `  fingerprint ${issued.fingerprint}`,
      `  expires ${issued.notAfter.toISOString()}`,
      `curl flags: --cert ${cert} --key ${key} --cacert ${ca}`,
    ].join('\n') + '\n',
  );
}

function printInstance(name: string, issued: IssuedInstanceCertificate): void {
  process.stdout.write(
    [
      `instance certificate for ${name} (URI gatehouse-instance:${name}${issued.hosts.length > 0 ? `, ${issued.hosts.join(', ')}` : ''}):`,
      `  wrote ${issued.cert}`,
      `  wrote ${issued.key}  (private key, mode 0600)`,
      `  serial ${issued.serial}`,
      `  fingerprint ${issued.fingerprint}`,
      `  expires ${issued.notAfter.toISOString()}`,
      'in that instance\'s config:',
      `  cluster:`,
      `    instance: ${name}`,
      `    peerCert: ${shellWord(issued.cert)}`,
      `    peerKey: ${shellWord(issued.key)}`,
    ].join('\n') + '\n',
  );
}

export function registerPki(program: Command): void {
  const pki = program
    .command('pki')
    .description('development CA, server certificate and client certificates (real sites bring their own CA)');

  pki
    .command('init')
    .description('create a development CA and a server certificate signed by it; keeps what already exists')
    .option('--dir <dir>', 'directory for ca.crt, ca.key, server.crt, server.key', 'certs')
    .option('--server-name <name>', 'extra DNS name or IP address for the server certificate (repeatable)', collect)
    .option('--days <days>', `server certificate validity in days (default ${DEFAULT_SERVER_DAYS})`, parseDays)
    .option('--force', 'replace the CA and server certificate even if they exist (invalidates client certificates)')
    .addHelpText(
      'after',
      '\nThe server certificate always names localhost, 127.0.0.1 and ::1. Private keys are written\n' +
        'with mode 0600; never commit them. Point the gateway at them with tls.cert, tls.key and tls.clientCa.',
    )
    .action(async (opts: { dir: string; serverName?: string[]; days?: number; force?: boolean }) => {
      try {
        const { initPki } = await import('../pki/index.ts');
        const result = await initPki({ dir: opts.dir, serverNames: opts.serverName ?? [], force: opts.force ?? false, ...(opts.days !== undefined && { days: opts.days }) });
        printInit(result);
      } catch (err) {
        fail('init', err);
      }
    });

  pki
    .command('client')
    .description('issue a client certificate (CN=NAME, O=gatehouse dev) signed by the development CA')
    .argument('<name>', 'client name: letters, digits, dot, underscore, dash (becomes the CN and the file name)')
    .option('--dir <dir>', 'directory that holds ca.crt and ca.key', 'certs')
    .option('--email <address>', 'add an email subject alternative name')
    .option('--out <dir>', 'where to write NAME.crt and NAME.key (default: <dir>/clients)')
    .option('--days <days>', `validity in days (default ${DEFAULT_CLIENT_DAYS})`, parseDays)
    .option('--force', 'replace an existing certificate of the same name')
    .addHelpText('after', '\nExample: gatehouse pki client alice --email alice@example.org')
    .action(async (name: string, opts: { dir: string; email?: string; out?: string; days?: number; force?: boolean }) => {
      try {
        const { issueClientCertificate } = await import('../pki/index.ts');
        const issued = await issueClientCertificate({
          dir: opts.dir,
          name,
          force: opts.force ?? false,
          ...(opts.email !== undefined && { email: opts.email }),
          ...(opts.out !== undefined && { out: opts.out }),
          ...(opts.days !== undefined && { days: opts.days }),
        });
        printClient(name, issued);
      } catch (err) {
        fail('client', err);
      }
    });

  pki
    .command('instance')
    .description('issue a cluster instance certificate (cluster.peerCert): URI gatehouse-instance:NAME, server and client use')
    .argument('<name>', 'the instance name, as its cluster.instance says it')
    .option('--dir <dir>', 'directory that holds ca.crt and ca.key', 'certs')
    .option('--host <name>', 'DNS name or IP address the other instances reach its peer port at (repeatable)', collect)
    .option('--out <dir>', 'where to write NAME.crt and NAME.key (default: <dir>/instances)')
    .option('--days <days>', `validity in days (default ${DEFAULT_CLIENT_DAYS})`, parseDays)
    .option('--force', 'replace an existing certificate of the same name')
    .addHelpText('after', '\nExample: gatehouse pki instance gw1 --host gw1.example.org --host 10.0.0.11')
    .action(async (name: string, opts: { dir: string; host?: string[]; out?: string; days?: number; force?: boolean }) => {
      try {
        const { issueInstanceCertificate } = await import('../pki/index.ts');
        const issued = await issueInstanceCertificate({
          dir: opts.dir,
          name,
          hosts: opts.host ?? [],
          force: opts.force ?? false,
          ...(opts.out !== undefined && { out: opts.out }),
          ...(opts.days !== undefined && { days: opts.days }),
        });
        printInstance(name, issued);
      } catch (err) {
        fail('instance', err);
      }
    });

  pki
    .command('ticket-key')
    .description('write a new TLS session-ticket key (tls.ticketKeys) shared by every gateway instance')
    .argument('<file>', 'where to write the 48-byte key (mode 0600)')
    .option('--force', 'replace an existing key (rotation: copy it to every instance, then SIGHUP them all)')
    .action(async (file: string, opts: { force?: boolean }) => {
      try {
        const { writeTicketKeyFile } = await import('../tls/ticketKeyFile.ts');
        const id = await writeTicketKeyFile(file, opts.force ?? false);
        process.stdout.write(`wrote ${file} (session-ticket key ${id}, mode 0600): tls.ticketKeys on every instance\n`);
      } catch (err) {
        fail('ticket-key', err);
      }
    });
}

// `gatehouse token keygen|mint|attenuate|inspect|revoke`: root keys, tokens and the revocation list.
// Failures print one line and exit 1; the token library is loaded only when a token command runs.
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { commandFailure } from '../errors/refusal.ts';
import { collect, readPublicKeyFile, readToken, run, unwrap } from './tokenCommon.ts';
import { registerRevoke } from './tokenRevoke.ts';

/** For an option whose value is optional: `true` when given bare, else the values given. */
const collectOrAll = (value: string, previous: true | string[] | undefined): string[] => [...(Array.isArray(previous) ? previous : []), value];

async function ttlSeconds(text: string | undefined): Promise<number | undefined> {
  if (text === undefined) return undefined;
  const { parseTtl } = await import('../token/duration.ts');
  return unwrap(parseTtl(text));
}

/** SHA-256 fingerprint of a PEM certificate, exactly as the gateway computes it for client certificates. */
async function certificateFingerprint(file: string): Promise<string> {
  let pem: Buffer;
  try {
    pem = fs.readFileSync(file);
  } catch (error) {
    throw commandFailure(`cannot read certificate ${file}: ${(error as Error).message}`);
  }
  const { identityFromPem } = await import('../tls/peerIdentity.ts');
  try {
    return identityFromPem(pem).fingerprint;
  } catch (error) {
    throw commandFailure(`${file} is not a PEM certificate: ${(error as Error).message}`);
  }
}

/** Prints a token, or writes it to a file only its owner can read. */
function emitToken(token: string, out: string | undefined): void {
  if (out === undefined) {
    process.stdout.write(`${token}\n`);
    return;
  }
  try {
    fs.writeFileSync(out, `${token}\n`, { mode: 0o600 });
    fs.chmodSync(out, 0o600);
  } catch (error) {
    throw commandFailure(`cannot write ${out}: ${(error as Error).message}`);
  }
  process.stderr.write(`wrote the token to ${out}\n`);
}

interface BindingOptions {
  bindCert?: string;
  bindCn?: string;
}

async function binding(options: BindingOptions): Promise<{ clientFingerprint?: string; clientCn?: string }> {
  if (options.bindCert !== undefined) return { clientFingerprint: await certificateFingerprint(options.bindCert) };
  if (options.bindCn !== undefined) return { clientCn: options.bindCn };
  return {};
}

function registerKeygen(token: Command): void {
  token
    .command('keygen')
    .description('create the root key pair that signs tokens (or with --issuer, an issuer\'s own key pair): <out>.key (private, 0600) and <out>.pub')
    .option('--out <base>', 'path of the key files without extension (default certs/token-root, with --issuer certs/issuer)')
    .option('--issuer', "an issuer's key (issuer.signingKey), never the root key: gateways trust its public key under authz.issuers")
    .option('--force', 'replace existing key files (every token signed by the old key stops working)')
    .action(
      run(async (options: { out?: string; issuer?: boolean; force?: boolean }) => {
        const { writeKeyPair } = await import('../token/keyFiles.ts');
        const out = options.out ?? (options.issuer ? 'certs/issuer' : 'certs/token-root');
        const privatePath = `${out}.key`;
        const publicPath = `${out}.pub`;
        fs.mkdirSync(path.dirname(privatePath), { recursive: true });
        const keys = unwrap(writeKeyPair(privatePath, publicPath, { force: options.force ?? false }));
        const use = options.issuer ? `issuer.signingKey; the public key goes to authz.issuers.<name>.publicKey` : 'authz.rootKey in routes.yaml';
        process.stderr.write(`wrote ${privatePath} (keep it secret) and ${publicPath} (${use})\n`);
        process.stdout.write(`${keys.publicKey}\n`);
      }),
    );
}

function registerMint(token: Command): void {
  token
    .command('mint')
    .description('mint a token for a user, signed with the root private key; prints it')
    .option('--key <file>', 'root private key file', 'certs/token-root.key')
    .requiredOption('--user <name>', 'user the token speaks for: user("<name>")')
    .option('--group <name>', 'group membership: group("<name>") (repeatable)', collect)
    .option('--ttl <duration>', 'lifetime: 30s, 15m, 8h, 7d', '12h')
    .option('--route <name>', 'limit the token to this route (repeatable)', collect)
    .addOption(new Option('--bind-cert <pem>', "bind to the holder's client certificate (its SHA-256 fingerprint)").conflicts(['bindCn', 'unbound']))
    .addOption(new Option('--bind-cn <cn>', 'bind to client certificates with this common name').conflicts(['unbound']))
    .addOption(new Option('--unbound', 'usable with any client certificate (must be asked for: tokens are bound by default)').conflicts(['delegable']))
    .option('--publish [service]', 'grant the right to publish this service with gatehouse publish (repeatable; without a service: any). Lent or attenuated copies carry it only if their block grants it again', collectOrAll)
    .option('--delegable', 'let the holder lend the token to another certificate: writes a delegation key (see token attenuate --delegation-key)')
    .option('--delegation-key-out <file>', 'where --delegable writes the delegation private key (default: <--out>.delegation.key)')
    .option('--out <file>', 'write the token to this file (mode 0600) instead of printing it')
    .action(
      run(
        async (
          options: BindingOptions & { key: string; user: string; group?: string[]; ttl: string; route?: string[]; publish?: true | string[]; out?: string; unbound?: boolean; delegable?: boolean; delegationKeyOut?: string },
        ) => {
          if (options.bindCert === undefined && options.bindCn === undefined && !options.unbound) {
            throw commandFailure("tokens are bound to their holder's client certificate: give --bind-cert PEM (or --bind-cn CN), or --unbound for a token any certificate may use");
          }
          const { readPrivateKey, privateKeyModeWarning, writeDelegationKey } = await import('../token/keyFiles.ts');
          const { mintToken } = await import('../token/mintToken.ts');
          const ttl = await ttlSeconds(options.ttl);
          const warning = privateKeyModeWarning(options.key);
          if (warning) process.stderr.write(`${warning}\n`);
          const privateKey = unwrap(readPrivateKey(options.key));
          const bound = await binding(options);
          let delegationKey: string | undefined;
          let delegationFile: string | undefined;
          if (options.delegable) {
            delegationFile = options.delegationKeyOut ?? (options.out !== undefined ? `${options.out}.delegation.key` : undefined);
            if (delegationFile === undefined) throw commandFailure('--delegable needs --delegation-key-out FILE (or --out FILE) for the delegation key');
            delegationKey = unwrap(writeDelegationKey(delegationFile)).publicKey;
          }
          const minted = mintToken({
            privateKey,
            user: options.user,
            ...(options.group ? { groups: options.group } : {}),
            ...(ttl !== undefined ? { ttlSeconds: ttl } : {}),
            ...(options.route ? { routes: options.route } : {}),
            ...(options.publish !== undefined ? { publish: options.publish === true ? ['*'] : options.publish } : {}),
            ...bound,
            ...(delegationKey !== undefined ? { delegationKey } : {}),
          });
          if (!minted.ok && delegationFile !== undefined) fs.rmSync(delegationFile, { force: true });
          emitToken(unwrap(minted), options.out);
          if (delegationFile !== undefined) process.stderr.write(`wrote the delegation key to ${delegationFile} (mode 0600): give it only to the token's holder\n`);
        },
      ),
    );
}

function registerAttenuate(token: Command): void {
  token
    .command('attenuate')
    .description('append a block that narrows a token (from --token, --token-file or standard input); prints the new token')
    .option('--pubkey <file>', 'root public key file (the token is verified first)', 'certs/token-root.pub')
    .option('--token <token>', 'the token text')
    .option('--token-file <file>', 'file holding the token (- for standard input)')
    .option('--ttl <duration>', 'expire after: 30s, 15m, 8h, 7d')
    .option('--route <name>', 'allow only this route (repeatable)', collect)
    .option('--method <method>', 'allow only this HTTP method (repeatable)', collect)
    .option('--path-prefix <prefix>', 'allow only paths starting with this (end it with / for a folder)')
    .option('--publish <service>', 'allow only publishing this service with gatehouse publish, no requests (repeatable); passes on the right to publish it', collect)
    .option('--allow-publish', 'pass on the right to publish (a lent or attenuated token cannot publish without it, or --publish)')
    .addOption(new Option('--bind-cert <pem>', 'allow only this client certificate (its SHA-256 fingerprint)').conflicts(['bindCn']))
    .option('--bind-cn <cn>', 'allow only client certificates with this common name')
    .option('--delegation-key <file>', "delegate: sign the block with the token's delegation key, so --bind-cert/--bind-cn may name another holder")
    .option('--out <file>', 'write the token to this file (mode 0600) instead of printing it')
    .action(
      run(
        async (
          options: BindingOptions & {
            pubkey: string;
            token?: string;
            tokenFile?: string;
            ttl?: string;
            route?: string[];
            method?: string[];
            pathPrefix?: string;
            publish?: string[];
            allowPublish?: boolean;
            delegationKey?: string;
            out?: string;
          },
        ) => {
          const { attenuateToken } = await import('../token/attenuateToken.ts');
          const { readPrivateKey, privateKeyModeWarning } = await import('../token/keyFiles.ts');
          const ttl = await ttlSeconds(options.ttl);
          const publicKey = await readPublicKeyFile(options.pubkey);
          let delegationPrivateKey;
          if (options.delegationKey !== undefined) {
            const warning = privateKeyModeWarning(options.delegationKey);
            if (warning) process.stderr.write(`${warning}\n`);
            delegationPrivateKey = unwrap(readPrivateKey(options.delegationKey));
          }
          const attenuated = attenuateToken({
            token: await readToken(options),
            publicKey,
            ...(ttl !== undefined ? { ttlSeconds: ttl } : {}),
            ...(options.route ? { routes: options.route } : {}),
            ...(options.method ? { methods: options.method } : {}),
            ...(options.pathPrefix !== undefined ? { pathPrefix: options.pathPrefix } : {}),
            ...(options.publish ? { publishServices: options.publish } : {}),
            ...(options.allowPublish ? { allowPublish: true } : {}),
            ...(await binding(options)),
            ...(delegationPrivateKey !== undefined ? { delegationPrivateKey } : {}),
          });
          emitToken(unwrap(attenuated), options.out);
        },
      ),
    );
}

function registerInspect(token: Command): void {
  token
    .command('inspect')
    .description('show a token: blocks as Datalog, revocation ids, user, groups, expiry')
    .option('--pubkey <file>', 'root public key file; without it only block count and revocation ids are shown, unverified')
    .option('--token <token>', 'the token text')
    .option('--token-file <file>', 'file holding the token (- for standard input)')
    .option('--json', 'machine-readable output')
    .action(
      run(async (options: { pubkey?: string; token?: string; tokenFile?: string; json?: boolean }) => {
        const { inspectToken } = await import('../token/inspectToken.ts');
        const { formatInspection } = await import('../token/inspectFormat.ts');
        const publicKey = options.pubkey !== undefined ? await readPublicKeyFile(options.pubkey) : undefined;
        const inspection = unwrap(inspectToken(await readToken(options), publicKey));
        process.stdout.write(options.json ? `${JSON.stringify(inspection, null, 2)}\n` : formatInspection(inspection));
      }),
    );
}

export function registerToken(program: Command): void {
  const token = program
    .command('token')
    .description('root keys, minting, attenuation, inspection and revocation of Biscuit tokens');
  registerKeygen(token);
  registerMint(token);
  registerAttenuate(token);
  registerInspect(token);
  registerRevoke(token);
}

// `gatehouse token revoke`: adds revocation ids (given, from a token's block, or every token the issuer gave
// a user) to the revocation list, or to the cluster database when the config names one.
import type { Command } from 'commander';
import type { ClusterSettings } from '../config/clusterSettings.ts';
import { commandFailure } from '../errors/refusal.ts';
import { collect, readPublicKeyFile, readToken, run, unwrap } from './tokenCommon.ts';

export function registerRevoke(token: Command): void {
  token
    .command('revoke')
    .description('add revocation ids to the revocation list (or, with --config naming a cluster, to the cluster database); prints the ids added')
    .option('--list <file>', 'revocation list file (authz.revocationList in routes.yaml)', 'certs/revoked.txt')
    .option('-c, --config <file>', "the gateway's routes.yaml: its cluster database when it has cluster:, else its authz.revocationList")
    .option('--id <hex>', 'revocation id to add (repeatable)', collect)
    .option('--token <token>', 'revoke this token')
    .option('--token-file <file>', 'revoke the token in this file')
    .option('--pubkey <file>', 'root public key file, to verify the token before revoking it')
    .option('--block <n>', 'revoke from this block: 0 (default) kills the token and everything derived from it', '0')
    .option('--user <name>', 'revoke every token the issuer gave this user, as the token.issue records of --audit name them')
    .option('--audit <file>', 'with --user: audit file(s) holding the issuer\'s token.issue records (repeatable)', collect)
    .action(
      run(
        async (options: { list: string; config?: string; id?: string[]; token?: string; tokenFile?: string; pubkey?: string; block: string; user?: string; audit?: string[] }) => {
          const { appendRevokedIds, validRevocationId } = await import('../token/revocationFile.ts');
          const fromToken = options.token !== undefined || options.tokenFile !== undefined;
          const sources = [options.id !== undefined, fromToken, options.user !== undefined].filter(Boolean).length;
          if (sources > 1) throw commandFailure('give one of --id, a token, or --user');
          if (sources === 0) throw commandFailure('nothing to revoke: give --id HEX, --token, --token-file or --user NAME');
          let ids = options.id ?? [];
          if (fromToken) ids = [await tokenRevocationId(options)];
          if (options.user !== undefined) ids = await issuedTo(options.user, options.audit ?? []);
          const target = options.config === undefined ? { list: options.list } : await revocationTarget(options.config);
          if ('cluster' in target) {
            const { revokeShared } = await import('../cluster/clusterCommands.ts');
            const { shownDatabase } = await import('../config/clusterSettings.ts');
            const valid = ids.map((id) => unwrap(validRevocationId(id)));
            const added = await revokeShared(target.cluster, valid).catch((error: unknown) => {
              throw commandFailure(`cluster database ${shownDatabase(target.cluster)}: ${error instanceof Error ? error.message : String(error)}; nothing revoked`);
            });
            process.stderr.write(added.length === 0 ? 'already revoked in the cluster database\n' : `added ${added.length} id(s) to the cluster database (every instance refuses them once it hears)\n`);
            for (const row of added) process.stdout.write(`${row.id}\n`);
            return;
          }
          const added = unwrap(appendRevokedIds(target.list, ids));
          if (added.length === 0) process.stderr.write(`already revoked in ${target.list}\n`);
          else process.stderr.write(`added ${added.length} id(s) to ${target.list}\n`);
          for (const id of added) process.stdout.write(`${id}\n`);
        },
      ),
    );
}

/** Every token issued to `user` according to the token.issue records in `files`. */
async function issuedTo(user: string, files: string[]): Promise<string[]> {
  if (files.length === 0) throw commandFailure('--user needs the audit file(s) with the issuer\'s records: --audit FILE');
  const { issuedRevocationIds } = await import('../issuer/issuedTokens.ts');
  const ids = await issuedRevocationIds(files, { user }).catch((error: unknown) => {
    throw commandFailure(`cannot read ${(error as { file?: string }).file ?? 'the audit files'}: ${(error as Error).message}`);
  });
  process.stderr.write(`${ids.length} token(s) issued to ${user}\n`);
  return ids;
}

/** Where `revoke --config FILE` writes: the cluster database when the config has one, else its revocation list. */
async function revocationTarget(configFile: string): Promise<{ cluster: ClusterSettings } | { list: string }> {
  const { formatConfigError, loadConfig } = await import('../configCheck/loadConfig.ts');
  const loaded = await loadConfig(configFile);
  if (!loaded.ok) throw commandFailure(`${configFile} is not valid: ${loaded.errors.map(formatConfigError).join('; ')}`);
  if (loaded.config.cluster) return { cluster: loaded.config.cluster };
  if (loaded.config.authz.revocationList === undefined) throw commandFailure(`${configFile} has neither cluster: nor authz.revocationList: nowhere to revoke`);
  return { list: loaded.config.authz.revocationList };
}

/** The revocation id of block `--block` of a token, verified when a public key is given. */
async function tokenRevocationId(options: { token?: string; tokenFile?: string; pubkey?: string; block: string }): Promise<string> {
  const { inspectToken } = await import('../token/inspectToken.ts');
  if (!/^\d{1,4}$/.test(options.block)) throw commandFailure(`invalid --block ${JSON.stringify(options.block)}: expected a block number`);
  const block = Number(options.block);
  const publicKey = options.pubkey !== undefined ? await readPublicKeyFile(options.pubkey) : undefined;
  const inspection = unwrap(inspectToken(await readToken(options), publicKey));
  if (!inspection.verified) process.stderr.write('note: token signatures not verified (no --pubkey)\n');
  const id = inspection.revocationIds[block];
  if (id === undefined) throw commandFailure(`the token has ${inspection.revocationIds.length} block(s); there is no block ${block}`);
  return id;
}


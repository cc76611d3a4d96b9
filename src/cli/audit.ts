// `gatehouse audit keygen|verify|prove|verify-proof|query`: the audit signing key, the integrity check
// of a set of audit files (chain, Merkle tree, checkpoints), proofs, and filtered views. All stream.
import type { Command } from 'commander';
import type { VerifyCliOptions } from '../audit/auditVerifyCommand.ts';
import { QUERY_FORMATS } from '../audit/queryFormats.ts';
import { choiceOption } from './choiceOption.ts';
import { say } from './say.ts';

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function registerKeygen(audit: Command): void {
  audit
    .command('keygen')
    .description('write an ed25519 audit signing key pair: <out>.key (private, mode 0600, for audit.signingKey) and <out>.pub (for audit verify)')
    .option('-o, --out <base>', 'path of the key files without extension', 'certs/audit-signing')
    .option('-f, --force', 'replace existing key files')
    .option('--origin <name>', "also print the signed-note verifier key for this log's origin (audit.origin), as Go's sumdb/note reads it")
    .action(async (opts: { out: string; force?: boolean; origin?: string }) => {
      const { readAuditPublicKey, writeAuditKeyPair } = await import('../audit/auditCheckpoint.ts');
      const written = writeAuditKeyPair(opts.out, opts.force ?? false);
      if (!written.ok) {
        say(written.error.message);
        process.exit(1);
      }
      process.stdout.write(`key id ${written.value.keyId}\nprivate key: ${written.value.privateFile} (set audit.signingKey to it)\npublic key:  ${written.value.publicFile} (give it to auditors: gatehouse audit verify --key ${written.value.publicFile} ...)\n`);
      const publicKey = readAuditPublicKey(written.value.publicFile);
      if (opts.origin && publicKey.ok) {
        const { verifierKey } = await import('../audit/signedNote.ts');
        process.stdout.write(`verifier key: ${verifierKey(opts.origin, publicKey.value)}\n`);
      }
    });
}

function registerVerify(audit: Command): void {
  audit
    .command('verify')
    .description('rebuild the Merkle tree of audit files (rotated files in any order, .gz too) and check the hash chain, every checkpoint (origin, size, root, signature) and that the files end sealed; exit 1 on the first problem')
    .argument('<files...>', 'audit files: the live file and its rotations')
    .option('-k, --key <file[:from[:until]]>', 'audit public key (PEM) that may sign checkpoints, optionally only from/until a date or UTC time (repeat for rotated keys)', collect)
    .option('--keyring <file>', 'a file of --key values, one per line (# comments)')
    .option('--origin <name>', 'the log every checkpoint must name (audit.origin)')
    .option('--anchor <checkpoint>', "a trusted checkpoint note (a witness's, a copy kept elsewhere): the files must reach it and agree (default: the log's own checkpoint file beside the files, if there)")
    .option('--live [seconds]', 'a running gateway\'s log: records after the last checkpoint are reported, and fail only when older than this (default 300)')
    .option('--partial', 'the files do not start the log: check from the first checkpoint on')
    .option('--unsigned', 'no key: check the chain and the tree only')
    .option('--witness-key <vkey>', "a witness's verifier key (or a file holding it): the anchor must carry its valid cosignature (repeat to require several)", collect)
    .action(async (files: string[], opts: VerifyCliOptions) => {
      const { runVerify } = await import('../audit/auditVerifyCommand.ts');
      const result = await runVerify(files, opts);
      if (!result.ok) {
        say(result.message);
        process.exit(2);
      }
      process.stdout.write(result.text);
      process.exitCode = result.failed ? 1 : 0;
    });
}

function registerProve(audit: Command): void {
  audit
    .command('prove')
    .description('print a proof (JSON): --seq N: the record, its inclusion proof and the last checkpoint in the files; --from CHECKPOINT: a consistency proof from that checkpoint to the last one in the files')
    .argument('<files...>', 'audit files holding the whole log from seq 1 (rotations in any order, .gz too)')
    .option('--seq <n>', 'the record to prove')
    .option('--from <checkpoint>', 'an earlier checkpoint note (a file)')
    .action(async (files: string[], opts: { seq?: string; from?: string }) => {
      const { proveConsistency, proveRecord } = await import('../audit/auditProve.ts');
      const { readFileSync } = await import('node:fs');
      const seq = Number(opts.seq);
      if ((opts.seq === undefined) === (opts.from === undefined) || (opts.seq !== undefined && !(Number.isSafeInteger(seq) && seq > 0))) {
        say('give either --seq N (a record number) or --from CHECKPOINT');
        process.exit(2);
      }
      const result = opts.from === undefined ? await proveRecord(files, seq) : await proveConsistency(files, readFileSync(opts.from, 'utf8'));
      if (!result.ok) {
        say(result.message);
        process.exit(1);
      }
      process.stdout.write(JSON.stringify(result.value, null, 2) + '\n');
    });
}

function registerVerifyProof(audit: Command): void {
  audit
    .command('verify-proof')
    .description('check a proof from audit prove with the public key(s) only; exit 0 when it holds, 1 when not')
    .argument('<proof>', 'the proof file (- for standard input)')
    .option('-k, --key <file>', 'audit public key (PEM) (repeat for rotated keys)', collect)
    .option('--origin <name>', 'the log the checkpoints must name')
    .action(async (proof: string, opts: { key?: string[]; origin?: string }) => {
      const { readKeys } = await import('../audit/auditVerifyCommand.ts');
      const { checkProof } = await import('../audit/auditProofCheck.ts');
      const { readFileSync } = await import('node:fs');
      const keys = readKeys(opts.key ?? []);
      if (!keys.ok || keys.keys.length === 0) {
        say(keys.ok ? 'give the audit public key (--key)' : keys.message);
        process.exit(2);
      }
      const checked = checkProof(readFileSync(proof === '-' ? 0 : proof, 'utf8'), keys.keys, opts.origin);
      process.stdout.write(checked.ok ? `${checked.summary}\n` : `FAIL ${checked.message}\n`);
      process.exitCode = checked.ok ? 0 : 1;
    });
}

function registerWitness(audit: Command): void {
  audit
    .command('witness')
    .description('run a witness (c2sp.org/tlog-witness over mTLS): cosign each checkpoint of the configured logs that extends the last one it cosigned, refuse (and count) any other')
    .requiredOption('-c, --config <file>', 'witness config (YAML: name, listen, key, stateDir, tls, logs)')
    .option('--vkey', 'print the witness verifier key (for audit.witnesses[].vkey and audit verify --witness-key) and exit')
    .option('--status', 'print what the witness cosigned and refused; exit 1 when it refused any checkpoint')
    .action(async (opts: { config: string; vkey?: boolean; status?: boolean }) => {
      const { loadWitnessConfig, startWitness } = await import('../audit/witnessServer.ts');
      const loaded = loadWitnessConfig(opts.config);
      if (!loaded.ok) {
        say(loaded.message);
        process.exit(2);
      }
      if (opts.vkey) {
        const { witnessVerifierKey } = await import('../audit/cosignature.ts');
        process.stdout.write(`${witnessVerifierKey(loaded.value.name, loaded.value.privateKey)}\n`);
        return;
      }
      if (opts.status) {
        const { readWitnessState } = await import('../audit/witnessState.ts');
        const state = readWitnessState(loaded.value.stateDir);
        if (!state.ok) {
          say(state.message);
          process.exit(2);
        }
        const { displaySafe } = await import('../text/displayText.ts');
        for (const [origin, log] of Object.entries(state.value.logs)) process.stdout.write(`${displaySafe(origin)}: size ${log.size}, cosigned ${new Date(log.time * 1000).toISOString()}\n`);
        const last = state.value.lastRefusal;
        process.stdout.write(`refused: ${state.value.refused}${last ? ` (last: ${displaySafe(`${last.time} ${last.origin}: ${last.reason}`)})` : ''}\n`);
        process.exitCode = state.value.refused > 0 ? 1 : 0;
        return;
      }
      try {
        const service = await startWitness(loaded.value);
        process.stderr.write(`gatehouse witness ${loaded.value.name} listening on https://${service.address} (vkey ${service.vkey})\n`);
        const stop = () => void service.close().then(() => process.exit(0));
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      } catch (err) {
        say(`witness: ${err instanceof Error ? err.message : String(err)}`);
        process.exit(1);
      }
    });
}

function registerQuery(audit: Command): void {
  audit
    .command('query')
    .description('filter audit records (all filters must match; repeat a filter to accept any of its values) and print them as a table, JSON lines, a per-user, per-route summary or a per-loan delegation summary')
    .argument('<files...>', 'audit files (.gz too), in any order: read oldest first')
    .option('--user <name>', 'token user', collect)
    .option('--cn <cn>', 'client certificate CN', collect)
    .option('--fingerprint <sha256:hex>', 'client certificate fingerprint', collect)
    .option('--route <name>', 'route', collect)
    .addOption(choiceOption('--decision <decision>', 'decision', ['allow', 'deny'], true))
    .option('--status <code>', 'HTTP status (e.g. 403, or 4xx)', collect)
    .option('--source <ip>', 'client IP address (or ip:port)', collect)
    .option('--event <event>', 'event, e.g. request, tunnel.close (a trailing * matches a prefix: tunnel.*)', collect)
    .option('--delegated-by <user>', 'made under a token this user lent to another certificate', collect)
    .option('--publisher <id>', 'through this publisher connection (its id in publish.open), and its publish.open/close', collect)
    .option('--idp-subject <sub>', 'tokens issued after this IdP subject\'s logins: their token.issue records and every record made with them, loans included', collect)
    .option('--relay <id>', 'a request or tunnel relayed between cluster instances, by its correlation id (relay.id): the entry instance\'s record and the carrier\'s relay.close; give every instance\'s files', collect)
    .option('--since <time>', 'from this time: ISO 8601, or a duration back from now (30m, 24h, 7d)')
    .option('--until <time>', 'up to this time (same forms)')
    .addOption(choiceOption('--format <format>', 'table, JSON lines, a per-user and per-route summary, or delegations (per loan: lender, borrower, first/last use, requests, bytes, routes)', QUERY_FORMATS).default('table'))
    .option('--verify', 'answer only if the files verify (as audit verify, with --key/--keyring/--origin/--anchor/--live)')
    .option('-k, --key <file[:from[:until]]>', 'with --verify: audit public key', collect)
    .option('--keyring <file>', 'with --verify: a file of --key values')
    .option('--origin <name>', 'with --verify: the log the checkpoints must name')
    .option('--anchor <checkpoint>', 'with --verify: a trusted checkpoint the files must reach')
    .option('--live [seconds]', 'with --verify: a running log, its unsealed tail allowed this long')
    .action(async (files: string[], opts: Record<string, unknown>) => {
      const { overlappingInputs } = await import('../audit/auditFileOrder.ts');
      const overlap = overlappingInputs(files);
      if (overlap) {
        say(overlap);
        process.exit(2);
      }
      if (opts.verify) {
        const { runVerify } = await import('../audit/auditVerifyCommand.ts');
        const verified = await runVerify(files, opts as VerifyCliOptions);
        if (!verified.ok || verified.failed) {
          say(verified.ok ? 'the files do not verify: no answer' : verified.message);
          // The report is already printable (formatVerifyReport escapes what came from the files), line by line.
          if (verified.ok) process.stderr.write(verified.text);
          process.exit(verified.ok ? 1 : 2);
        }
      }
      const { runAuditQuery } = await import('../audit/auditQueryCommand.ts');
      const result = await runAuditQuery(files, opts, process.stdout);
      if (!result.ok) {
        say(result.message);
        process.exit(2);
      }
    });
}

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('audit log tools: signing key, integrity check, queries');
  registerKeygen(audit);
  registerVerify(audit);
  registerProve(audit);
  registerVerifyProof(audit);
  registerWitness(audit);
  registerQuery(audit);
}

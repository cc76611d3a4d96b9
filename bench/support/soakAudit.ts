// Checks a soak run's audit log against its ledger: every connection the soak opened has exactly one
// open and one close record (or one TLS refusal), every tunnel exactly one tunnel.open and tunnel.close.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { AuditRecord } from '../../src/audit/auditRecord.ts';
import type { Ledger } from './soakLedger.ts';

export interface AuditCheck {
  records: number;
  byEvent: Record<string, number>;
  /** Connections the soak opened that should have open/close records, and how many matched exactly. */
  connectionsExpected: number;
  connectionsMatched: number;
  rejectsExpected: number;
  rejectsMatched: number;
  tunnelsExpected: number;
  tunnelsMatched: number;
  /** Records about a source the soak never opened (should be none). */
  strangers: number;
  /** tls.reject records that stand for several suppressed ones (should be none: sources are spread). */
  suppressedRejects: number;
  internalErrors: number;
  requestsByStatus: Record<string, number>;
  mismatches: string[];
}

interface PerSource {
  open: number;
  close: number;
  reject: number;
  tunnelOpen: number;
  tunnelClose: number;
}

export async function checkAudit(auditFile: string, ledger: Ledger): Promise<AuditCheck> {
  const sources = new Map<string, PerSource>();
  const at = (source: string): PerSource => {
    let s = sources.get(source);
    if (!s) sources.set(source, (s = { open: 0, close: 0, reject: 0, tunnelOpen: 0, tunnelClose: 0 }));
    return s;
  };
  const byEvent: Record<string, number> = {};
  const requestsByStatus: Record<string, number> = {};
  let records = 0;
  let suppressedRejects = 0;
  let internalErrors = 0;
  // Streamed: a ten-minute soak writes a few hundred thousand records.
  for await (const line of createInterface({ input: createReadStream(auditFile), crlfDelay: Infinity })) {
    if (line === '') continue;
    const r = JSON.parse(line) as AuditRecord;
    records++;
    byEvent[r.event] = (byEvent[r.event] ?? 0) + 1;
    if (r.reason?.startsWith('internal error')) internalErrors++;
    if (r.event === 'request') requestsByStatus[String(r.status ?? '-')] = (requestsByStatus[String(r.status ?? '-')] ?? 0) + 1;
    if (r.source === undefined) continue;
    const s = at(r.source);
    if (r.event === 'connection.open') s.open++;
    else if (r.event === 'connection.close') s.close++;
    else if (r.event === 'tls.reject') {
      s.reject++;
      if (r.detail?.suppressedBefore !== undefined) suppressedRejects++;
    } else if (r.event === 'tunnel.open') s.tunnelOpen++;
    else if (r.event === 'tunnel.close') s.tunnelClose++;
  }

  const mismatches: string[] = [];
  const note = (text: string) => {
    if (mismatches.length < 30) mismatches.push(text);
  };
  let connectionsExpected = 0;
  let connectionsMatched = 0;
  let rejectsExpected = 0;
  let rejectsMatched = 0;
  let tunnelsExpected = 0;
  let tunnelsMatched = 0;
  const none: PerSource = { open: 0, close: 0, reject: 0, tunnelOpen: 0, tunnelClose: 0 };
  for (const [source, n] of ledger.connections) {
    const s = sources.get(source) ?? none;
    const tunnels = ledger.tunnels.get(source) ?? 0;
    connectionsExpected += n;
    tunnelsExpected += tunnels;
    if (s.open === n && s.close === n && s.reject === 0) connectionsMatched += n;
    else note(`${source}: ${n} connection(s), audit has ${s.open} open, ${s.close} close, ${s.reject} tls.reject`);
    if (s.tunnelOpen === tunnels && s.tunnelClose === tunnels) tunnelsMatched += tunnels;
    else note(`${source}: ${tunnels} tunnel(s), audit has ${s.tunnelOpen} tunnel.open, ${s.tunnelClose} tunnel.close`);
  }
  for (const [source, n] of ledger.rejects) {
    const s = sources.get(source) ?? none;
    rejectsExpected += n;
    if (s.reject === n && s.open === 0) rejectsMatched += n;
    else note(`${source}: ${n} refused handshake(s), audit has ${s.reject} tls.reject, ${s.open} connection.open`);
  }
  let strangers = 0;
  for (const source of sources.keys()) {
    if (!ledger.connections.has(source) && !ledger.rejects.has(source)) {
      strangers++;
      note(`${source}: records for a connection the soak did not open`);
    }
  }
  return {
    records, byEvent, connectionsExpected, connectionsMatched, rejectsExpected, rejectsMatched, tunnelsExpected, tunnelsMatched,
    strangers, suppressedRejects, internalErrors, requestsByStatus, mismatches,
  };
}

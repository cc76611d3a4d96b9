// A compute node for tests: a network namespace joined to the host by a veth pair with private addresses,
// whose nftables input policy drops everything but loopback and replies (it accepts no inbound traffic).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { which } from './localServices.ts';

export interface ComputeNode {
  /** The namespace's name (unique per run). */
  name: string;
  /** The host's end of the veth pair, and the node's. */
  hostAddress: string;
  nodeAddress: string;
  /** Runs a command inside the node: prefix it with these. */
  exec: string[];
  /** Removes the namespace and its veth pair (idempotent). */
  remove(): void;
}

/** Why compute node tests cannot run here (not root, `ip` or `nft` missing), or undefined. */
export function computeNodeUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  if (which('ip') === undefined) return 'ip (iproute2) missing';
  if (which('nft') === undefined) return 'nft (nftables) missing';
  return undefined;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** The input chain of a node that accepts no inbound traffic: loopback, and replies to what it sent out. */
const NO_INBOUND = `table inet compute {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
  }
}
`;

/** A free 10.223.X.Y/30: one not on any host interface now. */
function freeSubnet(): [string, string] {
  for (let tries = 0; tries < 50; tries++) {
    const [x = 0, y = 0] = randomBytes(2);
    const base = `10.223.${x}.${y & 0xfc}`;
    if (ip('-o', 'addr', 'show', 'to', `${base}/30`).trim() === '') return [`10.223.${x}.${(y & 0xfc) + 1}`, `10.223.${x}.${(y & 0xfc) + 2}`];
  }
  throw new Error('no free 10.223.0.0/16 subnet');
}

/** Creates the node; `remove()` it in afterAll (a process exit removes it too, should the test die first). */
export function createComputeNode(): ComputeNode {
  const id = randomBytes(4).toString('hex');
  const name = `gatehouse-node-${process.pid}-${id}`;
  // Interface names have at most 15 characters.
  const [hostEnd, nodeEnd] = [`ghn${id}h`, `ghn${id}n`];
  const [hostAddress, nodeAddress] = freeSubnet();
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    // Deleting the namespace deletes its end of the pair, and with it the host's.
    try { ip('netns', 'del', name); } catch { /* never created */ }
    try { ip('link', 'del', hostEnd); } catch { /* gone with the namespace */ }
  };
  process.once('exit', remove);
  try {
    ip('netns', 'add', name);
    ip('link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', nodeEnd);
    ip('link', 'set', nodeEnd, 'netns', name);
    ip('addr', 'add', `${hostAddress}/30`, 'dev', hostEnd);
    ip('link', 'set', hostEnd, 'up');
    ip('-n', name, 'addr', 'add', `${nodeAddress}/30`, 'dev', nodeEnd);
    ip('-n', name, 'link', 'set', nodeEnd, 'up');
    ip('-n', name, 'link', 'set', 'lo', 'up');
    execFileSync('ip', ['netns', 'exec', name, 'nft', '-f', '-'], { input: NO_INBOUND, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (err) {
    remove();
    throw err;
  }
  return { name, hostAddress, nodeAddress, exec: ['ip', 'netns', 'exec', name], remove };
}

// `--stdio ROUTE`: one tunnel over standard input and output, for `ssh -o ProxyCommand=...`.
// Nothing but tunnel bytes goes to stdout; messages go to stderr; the exit code says what happened.
import { Duplex, type Readable, type Writable } from 'node:stream';
import { carryBytes } from '../tunnel/carryBytes.ts';
import { EXIT, describeFailure, exitCodeFor, type OpenResult } from './tunnelFailure.ts';

export interface StdioDeps {
  open(route: string): Promise<OpenResult>;
  gateway: string;
  say(line: string): void;
  input?: Readable;
  output?: Writable;
  /** Called once the tunnel is open, with a function that aborts it (for signals). */
  onOpen?(abort: () => void): void;
}

/** Runs one tunnel to `route` until both directions are done; resolves with the exit code. */
export async function runStdioTunnel(route: string, deps: StdioDeps): Promise<number> {
  const input = deps.input ?? process.stdin;
  const output = deps.output ?? process.stdout;
  const result = await deps.open(route);
  if (!result.ok) {
    deps.say(`error: ${describeFailure(result.failure, deps.gateway, route)}`);
    return exitCodeFor(result.failure);
  }
  const tunnel = result.stream;
  deps.onOpen?.(() => tunnel.destroy());
  return new Promise((resolve) => {
    let code: number | undefined;
    const fail = (what: string, err: Error) => {
      if (code !== undefined) return;
      code = EXIT.broken;
      deps.say(`error: ${what}: ${err.message}`);
      tunnel.destroy();
      resolve(code);
    };
    tunnel.on('error', (err) => fail(`tunnel to ${route} broke`, err));
    input.on('error', (err) => fail('reading standard input', err));
    output.on('error', (err) => fail('writing standard output', err));
    // The byte carrier with the client's choices (as for -L): standard input and output are its client
    // side. It settles once the tunnel is closed and everything it delivered has reached stdout, so the
    // process may exit then.
    const carried = carryBytes({ client: Duplex.from({ readable: input, writable: output }), upstream: tunnel, onError: 'as-close', lingerMs: 0 });
    void carried.done.then(() => {
      if (code !== undefined) return;
      code = EXIT.ok;
      resolve(code);
    });
  });
}

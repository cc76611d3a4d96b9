// `--stdio ROUTE`: one tunnel over standard input and output, for `ssh -o ProxyCommand=...`.
// Nothing but tunnel bytes goes to stdout; messages go to stderr; the exit code says what happened.
import type { Readable, Writable } from 'node:stream';
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
    tunnel.once('close', () => {
      if (code !== undefined) return;
      const done = () => {
        if (code !== undefined) return;
        code = EXIT.ok;
        resolve(code);
      };
      // Everything the tunnel delivered must reach stdout before the process may exit.
      if (output.writableEnded && !output.writableFinished) output.once('finish', done);
      else done();
    });
    input.pipe(tunnel);
    tunnel.pipe(output);
  });
}

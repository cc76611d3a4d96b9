// Operator messages of the gateway commands: one line on stderr, prefixed with the program name.
// The audit log, not this, is the record of traffic.
export function say(message: string): void {
  process.stderr.write(`gatehouse: ${message}\n`);
}

// A reader that stops early (`gatehouse audit query ... | head`) closes the pipe under stdout: the
// command then ends quietly with status 0, as it would had it finished, instead of printing "write EPIPE".

/** Set by a command whose stdout is a data stream it answers for itself (`tunnel --stdio`: a closed stdout is a broken tunnel). */
let ownedByCommand = false;

/** Installed once by each program's entry, before any command writes to stdout. */
export function exitQuietlyOnClosedPipe(): void {
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (ownedByCommand) return;
    // Exiting inside the emit: no later write or rejected `drain` wait gets to report the error.
    if (error.code === 'EPIPE') process.exit(0);
    throw error;
  });
}

/** The running command handles errors on stdout itself (its own 'error' listener reports them). */
export function stdoutErrorsHandledByCommand(): void {
  ownedByCommand = true;
}

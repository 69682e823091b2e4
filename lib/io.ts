// Where the commands and the library write. The real process streams in bin/magicdec.js; string sinks in
// tests, so commands run in-process and their output can be asserted.
export interface OutStream {
  write(s: string): unknown;
  readonly isTTY?: boolean;
}

export interface Io {
  readonly stdout: OutStream;
  readonly stderr: OutStream;
}

export const processIo: Io = { stdout: process.stdout, stderr: process.stderr };

/** An Io that records everything written, for tests. */
export function memoryIo(): Io & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    out: () => out,
    err: () => err,
  };
}

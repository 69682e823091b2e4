// Build progress on stderr: a cli-progress bar when stderr is a terminal, one plain line per compiled
// file otherwise (CI logs, pipes, tests), so logs stay readable and free of control characters.
import cliProgress from 'cli-progress';
import type { Io } from './io.ts';

export interface Progress {
  update(done: number, total: number, file: string): void;
  stop(): void;
}

export function progress(io: Io, label: string): Progress {
  if (!io.stderr.isTTY) {
    return {
      update: (done, total, file) => io.stderr.write(`${label} [${done}/${total}] ${file}\n`),
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: io.stderr as NodeJS.WritableStream,
      format: `${label} [{bar}] {value}/{total} {file}`,
      hideCursor: true,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total, file) {
      if (!started) {
        bar.start(total, 0, { file: '' });
        started = true;
      }
      bar.update(done, { file });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

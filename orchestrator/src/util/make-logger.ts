import { Writable } from 'node:stream';
import pino from 'pino';
import type { LogLevel, Logger } from './logger.js';

const levelNames: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const hidden = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'job']);

/** One human line per record, for terminals: "12:00:01 info  applied batch sync=shop rows=3". */
export function humanLine(record: Record<string, unknown>): string {
  const time = new Date(Number(record.time)).toISOString().slice(11, 19);
  const level = (levelNames[Number(record.level)] ?? 'log').padEnd(5);
  const fields = Object.entries(record)
    .filter(([k]) => !hidden.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level} ${String(record.msg ?? '')}${fields ? ` ${fields}` : ''}\n`;
}

/**
 * The daemon's logger: JSON lines (one per record, for log files and
 * collectors), or human-readable lines when writing to a terminal.
 */
export function makeLogger(opts: { level: LogLevel; job: string; human: boolean; out?: NodeJS.WritableStream }): Logger {
  const out = opts.out ?? process.stdout;
  const dest = opts.human
    ? new Writable({
        write(chunk: Buffer, _enc, cb) {
          for (const line of chunk.toString('utf8').split('\n')) {
            if (line) out.write(humanLine(JSON.parse(line) as Record<string, unknown>));
          }
          cb();
        },
      })
    : out;
  return pino({ level: opts.level, base: { job: opts.job } }, dest as pino.DestinationStream) as unknown as Logger;
}

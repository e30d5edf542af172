// Sub-commands of the `tern` command line: `tern passwd` (the password file) and `tern keys`
// (show or regenerate an access key). Anything else is an error; options without a sub-command
// start the broker.
import path from 'node:path';
import { connectionString, loadOrCreateAccessKeys, regenerateAccessKey } from '../auth/keys.ts';
import { passwdCommand } from './passwd.ts';

export interface CommandIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
}

const KEYS_USAGE = `Usage: tern keys show [--data-dir <dir>] [--endpoint <http(s)://host:port>]
       tern keys regenerate primary|secondary [--data-dir <dir>]
Keys live in <data-dir>/access-keys.json (default ./data, or TERN_DATA_DIR). After regenerating,
send the running broker SIGHUP (or restart it): tokens signed with the other key keep working.`;

/** Run `argv` (starting with the sub-command's name); resolves with the exit code. */
export async function runSubcommand(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === 'passwd') return passwdCommand(rest, io);
  if (name === 'keys') return keysCommand(rest, io);
  io.stderr.write(`tern: unknown command "${name}" (commands: passwd, keys; options start the broker, --help lists them)\n`);
  return 2;
}

function option(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

function keysCommand(args: string[], io: CommandIo): number {
  const dataDir = path.resolve(option(args, '--data-dir') ?? io.env['TERN_DATA_DIR'] ?? './data');
  const [action, which] = args.filter((a, i) => !a.startsWith('--') && !(i > 0 && args[i - 1]!.startsWith('--')));
  if (io.env['TERN_ACCESS_KEY'] || io.env['TERN_SECONDARY_ACCESS_KEY']) {
    io.stderr.write('tern keys: TERN_ACCESS_KEY / TERN_SECONDARY_ACCESS_KEY are set: a broker started with them (or with --access-key) uses those, not the key file shown or changed here\n');
  }
  try {
    if (action === 'show') {
      const { keys, file } = loadOrCreateAccessKeys(dataDir, {});
      const endpoint = option(args, '--endpoint') ?? 'http://127.0.0.1:8080';
      io.stdout.write(`${file}\nprimary:   ${connectionString(endpoint, keys.primary)}\nsecondary: ${connectionString(endpoint, keys.secondary)}\n`);
      return 0;
    }
    if (action === 'regenerate' && (which === 'primary' || which === 'secondary')) {
      const keys = regenerateAccessKey(dataDir, which);
      io.stdout.write(`${which} key regenerated; the ${which === 'primary' ? 'secondary' : 'primary'} key is unchanged.\nnew ${which}: ${keys[which]}\nSend the broker SIGHUP (kill -HUP <pid>) or restart it to use it.\n`);
      return 0;
    }
  } catch (err) {
    io.stderr.write(`tern keys: ${(err as Error).message}\n`);
    return 1;
  }
  io.stderr.write(`${KEYS_USAGE}\n`);
  return 2;
}

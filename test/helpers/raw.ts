// A raw TCP client for byte-level tests: send hex, read bytes, see the close.
import net from 'node:net';

export interface RawClient {
  socket: net.Socket;
  send(hex: string | Buffer): void;
  /** Resolve with at least `n` bytes received (all bytes so far), or reject after `timeoutMs`. */
  read(n: number, timeoutMs?: number): Promise<Buffer>;
  /** Resolve with every byte received once the server closes the connection. */
  closed(timeoutMs?: number): Promise<Buffer>;
  end(): void;
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

export async function rawConnect(port: number, host = '127.0.0.1'): Promise<RawClient> {
  const socket = net.connect(port, host);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  let received = Buffer.alloc(0);
  let isClosed = false;
  const waiters: Array<() => void> = [];
  socket.on('data', (b: Buffer) => {
    received = Buffer.concat([received, b]);
    for (const w of [...waiters]) w();
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    isClosed = true;
    for (const w of [...waiters]) w();
  });
  const wait = (done: () => boolean, timeoutMs: number, what: string): Promise<Buffer> => new Promise((resolve, reject) => {
    const check = (): void => {
      if (done()) {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        resolve(received);
      }
    };
    const timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(check), 1);
      reject(new Error(`timed out waiting for ${what}; received ${received.toString('hex')}`));
    }, timeoutMs);
    waiters.push(check);
    check();
  });
  return {
    socket,
    send: (h) => { socket.write(typeof h === 'string' ? hex(h) : h); },
    read: (n, timeoutMs = 3000) => wait(() => received.length >= n, timeoutMs, `${n} bytes`),
    closed: (timeoutMs = 3000) => wait(() => isClosed, timeoutMs, 'close'),
    end: () => socket.destroy(),
  };
}

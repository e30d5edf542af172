// MQTT over TCP (and TLS): node:net / node:tls sockets as ByteChannels. Bytes only.
import net from 'node:net';
import tls from 'node:tls';
import type { ByteChannel, OnConnection } from './byte-channel.ts';

export interface TcpListenerOptions {
  host: string;
  port: number;
  /** Hub every client of this listener joins. */
  hub: string;
  onConnection: OnConnection;
  /** Present for mqtts. */
  tls?: tls.TlsOptions;
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

function wrap(socket: net.Socket, transport: 'tcp' | 'tls'): ByteChannel {
  let closed = false;
  const channel: ByteChannel = {
    transport,
    remoteAddress: socket.remoteAddress ?? '',
    write: (bytes) => (closed ? false : socket.write(bytes)),
    bufferedBytes: () => socket.writableLength,
    close: () => {
      if (!closed) socket.end();
      // A peer that never reads must not hold the socket open forever
      setTimeout(() => socket.destroy(), 2000).unref();
    },
    onData: () => undefined,
    onDrain: () => undefined,
    onClose: () => undefined,
  };
  socket.on('data', (b: Buffer) => {
    try {
      channel.onData(b);
    } catch {
      socket.destroy();
    }
  });
  socket.on('drain', () => {
    try {
      channel.onDrain();
    } catch {
      socket.destroy();
    }
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    closed = true;
    channel.onClose();
  });
  return channel;
}

/** Listen for MQTT over TCP (or TLS when `tls` is set). Resolves once bound. */
export function listenTcp(opts: TcpListenerOptions): Promise<Listener> {
  const transport = opts.tls ? 'tls' : 'tcp';
  const sockets = new Set<net.Socket>();
  const onSocket = (socket: net.Socket): void => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    opts.onConnection(wrap(socket, transport), { hub: opts.hub, upgradeToken: undefined });
  };
  const server = opts.tls
    ? tls.createServer(opts.tls, onSocket)
    : net.createServer(onSocket);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      const address = server.address() as net.AddressInfo;
      resolve({
        port: address.port,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          for (const s of sockets) s.destroy();
        }),
      });
    });
  });
}

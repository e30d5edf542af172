// MQTT over TCP (and TLS): node:net / node:tls sockets as ByteChannels. Bytes only.
import net from 'node:net';
import tls from 'node:tls';
import type { ByteChannel, ChannelSink, OnConnection } from './byte-channel.ts';
import { peerCertificateFrom } from './peer-certificate.ts';

export interface TcpListenerOptions {
  host: string;
  port: number;
  /** Hub every client of this listener joins. */
  hub: string;
  onConnection: OnConnection;
  /** Asked before anything is read from a new socket; false closes it at once. */
  admit?: (remoteAddress: string) => boolean;
  /**
   * Present for mqtts. With `ca` and `requestCert` clients are asked for a certificate; one that does
   * not verify is refused at the handshake only with `rejectUnauthorized: true`, else it is handed on
   * with `authorized: false` (`AcceptInfo.clientCertificate`).
   */
  tls?: tls.TlsOptions;
}

export interface Listener {
  readonly port: number;
  close(): Promise<void>;
}

/** A node:net / node:tls socket as a ByteChannel. */
class SocketChannel implements ByteChannel {
  readonly transport: 'tcp' | 'tls';
  readonly remoteAddress: string;
  sink: ChannelSink | undefined;
  closed = false;
  readonly #socket: net.Socket;

  constructor(socket: net.Socket, transport: 'tcp' | 'tls') {
    this.#socket = socket;
    this.transport = transport;
    this.remoteAddress = socket.remoteAddress ?? '';
  }

  write(bytes: Buffer): boolean {
    return this.closed ? false : this.#socket.write(bytes);
  }

  bufferedBytes(): number {
    return this.#socket.writableLength;
  }

  pauseReading(): void {
    this.#socket.pause();
  }

  resumeReading(): void {
    this.#socket.resume();
  }

  close(): void {
    const socket = this.#socket;
    if (!this.closed) socket.end();
    // A peer that never reads must not hold the socket open forever
    setTimeout(() => socket.destroy(), 2000).unref();
  }
}

function wrap(socket: net.Socket, transport: 'tcp' | 'tls'): ByteChannel {
  const channel = new SocketChannel(socket, transport);
  socket.on('data', (b: Buffer) => {
    try {
      channel.sink?.channelData(b);
    } catch {
      socket.destroy();
    }
  });
  socket.on('drain', () => {
    try {
      channel.sink?.channelDrain();
    } catch {
      socket.destroy();
    }
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => {
    channel.closed = true;
    channel.sink?.channelClosed();
  });
  return channel;
}

/** Listen for MQTT over TCP (or TLS when `tls` is set). Resolves once bound. */
export function listenTcp(opts: TcpListenerOptions): Promise<Listener> {
  const transport = opts.tls ? 'tls' : 'tcp';
  const sockets = new Set<net.Socket>();
  const refused = (socket: net.Socket): boolean => {
    if (!opts.admit || opts.admit(socket.remoteAddress ?? '')) return false;
    socket.on('error', () => undefined);
    socket.destroy();
    return true;
  };
  const onSocket = (socket: net.Socket): void => {
    // TLS sockets were admitted before their handshake (below)
    if (!opts.tls && refused(socket)) return;
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const clientCertificate = opts.tls?.requestCert ? peerCertificateFrom(socket as tls.TLSSocket) : undefined;
    opts.onConnection(wrap(socket, transport), { hub: opts.hub, upgradeToken: undefined, ...(clientCertificate ? { clientCertificate } : {}) });
  };
  const server = opts.tls
    // minVersion explicit, whatever --tls-min-v1.x Node runs with; rejectUnauthorized false unless asked:
    // Node's default (true) would refuse every client without a certificate once requestCert is set
    ? tls.createServer({ minVersion: 'TLSv1.2', rejectUnauthorized: false, ...opts.tls }, onSocket)
    : net.createServer(onSocket);
  // Connection limits and the rate limit apply before the TLS handshake, whose CPU they protect
  if (opts.tls) server.on('connection', (raw: net.Socket) => { refused(raw); });
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

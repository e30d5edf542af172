// A loopback TCP proxy for fault injection: forward bytes both ways, freeze (stop forwarding with
// the sockets still open: a peer that stopped answering) or cut every connection at once.
import { once } from 'node:events';
import net from 'node:net';

/** A loopback TCP proxy to `target` whose forwarding can be frozen (sockets kept open, bytes held). */
export class FreezableProxy {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  #frozen = false;
  port = 0;

  constructor(readonly target: { host: string; port: number }) {
    this.#server = net.createServer((down) => {
      const up = net.connect(target.port, target.host);
      for (const s of [down, up]) {
        this.#sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => { this.#sockets.delete(s); down.destroy(); up.destroy(); });
        if (this.#frozen) s.pause();
      }
      down.on('data', (b: Buffer) => up.write(b));
      up.on('data', (b: Buffer) => down.write(b));
    });
  }

  async listen(): Promise<void> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.port = (this.#server.address() as net.AddressInfo).port;
  }

  /** Stop forwarding in both directions; the sockets stay open (a server that stopped answering). */
  freeze(): void {
    this.#frozen = true;
    for (const s of this.#sockets) s.pause();
  }

  /** Destroy every connection at once (a network failure or a server crash, without a goodbye). */
  cut(): void {
    for (const s of this.#sockets) s.destroy();
  }

  thaw(): void {
    this.#frozen = false;
    for (const s of this.#sockets) s.resume();
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}


// ByteChannel: what a transport hands the broker for one client connection. Bytes in and out,
// nothing MQTT-specific.

/** One client network connection as a byte stream. */
export interface ByteChannel {
  readonly transport: 'tcp' | 'tls' | 'ws' | 'wss';
  readonly remoteAddress: string;
  /** Write one buffer; false means the transport is buffering and `onDrain` will follow. */
  write(bytes: Buffer): boolean;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  bufferedBytes(): number;
  /** Close after flushing what was written. */
  close(): void;
  onData: (bytes: Buffer) => void;
  onDrain: () => void;
  /** Called once, when the connection is gone (either side). */
  onClose: () => void;
}

/** Details a transport learned while accepting a connection. */
export interface AcceptInfo {
  hub: string;
  /** Token from the WebSocket upgrade (query `access_token` or `Authorization: Bearer`). */
  upgradeToken: string | undefined;
}

/** How transports hand new connections to whoever consumes them. */
export type OnConnection = (channel: ByteChannel, info: AcceptInfo) => void;

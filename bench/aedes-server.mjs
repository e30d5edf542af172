// aedes for the side-by-side benchmark: MQTT over TCP (node:net) and over WebSocket (`ws`, each
// socket wrapped as a stream with createWebSocketStream), both on 127.0.0.1, in-memory
// persistence (aedes' default). Prints one JSON line with the bound ports, stops on SIGTERM.
// Usage: node bench/aedes-server.mjs [--ws-port 0] [--tcp-port 0]
import net from 'node:net';
import { parseArgs } from 'node:util';
import { Aedes } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';

const { values } = parseArgs({ options: { 'ws-port': { type: 'string', default: '0' }, 'tcp-port': { type: 'string', default: '0' } } });

const aedes = await Aedes.createBroker();
aedes.on('clientError', () => undefined);
aedes.on('connectionError', () => undefined);

const tcp = net.createServer({ noDelay: true }, aedes.handle);
await new Promise((resolve) => tcp.listen(Number(values['tcp-port']), '127.0.0.1', 4096, resolve));

const wss = new WebSocketServer({
  host: '127.0.0.1', port: Number(values['ws-port']), backlog: 4096, perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
});
await new Promise((resolve) => wss.once('listening', resolve));
wss.on('connection', (ws, req) => {
  const stream = createWebSocketStream(ws);
  stream.on('error', () => undefined);
  aedes.handle(stream, req);
});

process.stdout.write(`${JSON.stringify({ msg: 'aedes listening', wsPort: wss.address().port, tcpPort: tcp.address().port, pid: process.pid })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  for (const c of wss.clients) c.terminate();
  wss.close();
  tcp.close();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

import { randomBytes } from 'node:crypto';
import { type RemoteInfo, createSocket } from 'node:dgram';
import bencode from 'bencode';

/** A decoded KRPC message as bencode 4 gives it (byte strings as Uint8Array). */
export type Krpc = Record<string, unknown>;

/**
 * A raw UDP endpoint on 127.0.0.1 speaking KRPC by hand: sends anything (also datagrams no DHT
 * library would produce) and waits for answers by transaction id.
 */
export async function rawKrpc(t: { after(fn: () => unknown): void }) {
  const socket = createSocket('udp4');
  const waiting = new Map<string, (message: Krpc) => void>();
  const queries: Array<{ message: Krpc; from: RemoteInfo }> = [];
  let onQuery: ((message: Krpc, from: RemoteInfo) => void) | undefined;
  socket.on('message', (data, from) => {
    let message: Krpc;
    try {
      message = bencode.decode(data) as Krpc;
    } catch {
      return;
    }
    const y = Buffer.from((message.y as Uint8Array | undefined) ?? []).toString();
    const t = Buffer.from((message.t as Uint8Array | undefined) ?? []).toString('hex');
    if (y === 'q') {
      queries.push({ message, from });
      onQuery?.(message, from);
      return;
    }
    waiting.get(t)?.(message);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  t.after(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  const send = (port: number, data: Uint8Array | string) =>
    new Promise<void>((resolve, reject) =>
      socket.send(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
    );
  return {
    port: socket.address().port,
    send,
    /** Queries the DHT node at `port` and resolves with its answer (r or e), or rejects after `timeoutMs`. */
    async query(port: number, q: string, a: Record<string, unknown>, timeoutMs = 2000): Promise<Krpc> {
      const t = randomBytes(2);
      const answer = new Promise<Krpc>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(t.toString('hex'));
          reject(new Error(`no answer to ${q} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(t.toString('hex'), (message) => {
          clearTimeout(timer);
          waiting.delete(t.toString('hex'));
          resolve(message);
        });
      });
      await send(port, bencode.encode({ t, y: 'q', q, a }));
      return answer;
    },
    /** Queries this endpoint received (when it acts as a DHT node others talk to). */
    queries,
    /** Answers every query from now on with the datagrams `handler` returns (a hostile DHT node). */
    answerQueries(handler: (message: Krpc, from: RemoteInfo) => Uint8Array[]) {
      onQuery = (message, from) => {
        for (const reply of handler(message, from)) socket.send(reply, from.port, from.address);
      };
    },
  };
}

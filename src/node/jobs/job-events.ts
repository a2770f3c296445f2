import { type MessageChannel } from '../wire/channel.ts';
import type { WireMessage } from '../wire/messages.ts';

/**
 * One attached orderer stream of a job: messages go out in order, one write at a time; a stream
 * that fails is dropped (the job goes on; the orderer re-attaches and catches up from its log seq).
 * Until `open()`, live messages wait (the attach replays the stored log first).
 */
export class JobListener {
  private chain: Promise<void> = Promise.resolve();
  private held: WireMessage[] | null = [];
  private broken = false;
  private readonly finished: Promise<void>;
  private resolveFinished!: () => void;

  constructor(
    private readonly channel: MessageChannel,
    readonly peerId: string,
  ) {
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
  }

  get alive(): boolean {
    return !this.broken;
  }

  /** Sends what was held back, skipping log chunks the replay already delivered. */
  open(replayedSeq: number): void {
    const held = this.held ?? [];
    this.held = null;
    for (const message of held) {
      if (message.type === 'job_log' && message.seq <= replayedSeq) continue;
      this.write(message);
    }
  }

  push(message: WireMessage): void {
    if (this.held) this.held.push(message);
    else this.write(message);
  }

  /** The final message: written last, then the stream is ended; resolves `done`. */
  end(message: WireMessage): void {
    if (this.held) this.open(Number.POSITIVE_INFINITY);
    this.enqueue(async () => {
      await this.channel.sendFinal(message);
      await this.channel.finish().catch(() => {});
    });
    void this.chain.then(() => this.resolveFinished());
  }

  /** Resolves once the final message went out or the stream failed. */
  done(): Promise<void> {
    return this.finished;
  }

  /** Sends directly, in order with what is queued (the replay, before `open`). */
  async send(message: WireMessage): Promise<void> {
    this.enqueue(() => this.channel.send(message));
    await this.chain;
  }

  private write(message: WireMessage): void {
    this.enqueue(() => this.channel.send(message));
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.broken) return;
      try {
        await step();
      } catch (error) {
        this.broken = true;
        this.resolveFinished();
        await this.channel.fail(error);
      }
    });
  }
}

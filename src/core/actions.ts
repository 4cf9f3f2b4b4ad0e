/**
 * What a pipeline run decided, for the I/O layer to perform: sends (buffer to a
 * peer), deliveries (buffer to a domain's port, or in replay to a label), and a
 * verdict per input. Every buffer the run touched is listed once in `release`:
 * after performing the sends and deliveries the caller returns those to the pool.
 * The arrays are reused across runs, so a run allocates nothing once warm.
 */
import type { PacketBuf } from '../buf/packet-buf.js';

/** Verdict of an input that is an IP fragment waiting for the rest of its datagram. */
export const VERDICT_PENDING = -1;

/** Delivery target of a replay without domains: the frame goes to its label (OUT.pcap). */
export const DELIVER_TO_LABEL = -1;

export class Actions {
  /** Per input: OK, a reason code, or VERDICT_PENDING. */
  readonly verdict: number[] = [];
  /** Per input: the ESP SPI involved, or -1. */
  readonly spi: number[] = [];
  /** Per input: the ESP sequence number (64-bit value when known), or -1. */
  readonly seq: number[] = [];
  inputCount = 0;

  readonly sendBufs: PacketBuf[] = [];
  readonly sendPeer: number[] = [];
  /** The input index each send came from. */
  readonly sendFrom: number[] = [];
  sendCount = 0;

  readonly deliverBufs: PacketBuf[] = [];
  /** Domain id, or DELIVER_TO_LABEL (then `deliverLabel` says which). */
  readonly deliverDomain: number[] = [];
  readonly deliverLabel: number[] = [];
  readonly deliverFrom: number[] = [];
  deliverCount = 0;

  readonly release: PacketBuf[] = [];
  releaseCount = 0;

  /** Starts a run over `inputs` inputs. */
  reset(inputs: number): void {
    this.inputCount = inputs;
    for (let i = 0; i < inputs; i++) {
      this.verdict[i] = 0;
      this.spi[i] = -1;
      this.seq[i] = -1;
    }
    this.sendCount = 0;
    this.deliverCount = 0;
    this.releaseCount = 0;
  }

  /** Records a send of `buf` to `peer` for input `from`. */
  send(buf: PacketBuf, peer: number, from: number): void {
    const k = this.sendCount++;
    this.sendBufs[k] = buf;
    this.sendPeer[k] = peer;
    this.sendFrom[k] = from;
  }

  /** Records a delivery of `buf` to `domain` (or DELIVER_TO_LABEL with `label`) for input `from`. */
  deliver(buf: PacketBuf, domain: number, label: number, from: number): void {
    const k = this.deliverCount++;
    this.deliverBufs[k] = buf;
    this.deliverDomain[k] = domain;
    this.deliverLabel[k] = label;
    this.deliverFrom[k] = from;
  }

  /** Lists `buf` for return to the pool once the actions are performed. */
  releaseBuf(buf: PacketBuf): void {
    this.release[this.releaseCount++] = buf;
  }
}

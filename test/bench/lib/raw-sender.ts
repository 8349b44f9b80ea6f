/**
 * A minimal E2EE sender for the benchmark: an in-memory `OlmMachine` (no store) for a user that is
 * registered on Synapse. Its device keys and one-time keys are uploaded through Synapse, and it
 * queries and claims the bot's keys through Synapse, so an Olm session exists. What it does NOT
 * send through Synapse: the room key (`shareRoomKey`'s to-device messages) and the encrypted room
 * events. Those are returned to the benchmark, which pushes them straight into the bot's
 * appservice endpoint, shaped like Synapse's transactions, to time the bot alone.
 */
import {
  DeviceId,
  EncryptionSettings,
  initAsync,
  KeysClaimRequest,
  KeysQueryRequest,
  KeysUploadRequest,
  OlmMachine,
  RoomId,
  SignatureUploadRequest,
  ToDeviceRequest,
  UserId,
} from '@matrix-org/matrix-sdk-crypto-wasm';

export interface Login {
  readonly userId: string;
  readonly accessToken: string;
  readonly deviceId: string;
}

/** A to-device event as Synapse puts it into `de.sorunome.msc2409.to_device`. */
export interface AppserviceToDevice {
  type: string;
  sender: string;
  content: Record<string, unknown>;
  to_user_id: string;
  to_device_id: string;
}

type Request = KeysUploadRequest | KeysQueryRequest | KeysClaimRequest | ToDeviceRequest | SignatureUploadRequest;

export interface RawSenderOptions {
  /** The only recipient of room keys (the bot). */
  readonly recipient: string;
  /** Megolm session rotation, in messages (Element's default: 100). */
  readonly rotationMessages?: number;
}

export class RawSender {
  readonly userId: string;
  readonly deviceId: string;
  readonly machine: OlmMachine;
  readonly #baseUrl: string;
  readonly #token: string;
  readonly #recipient: string;
  readonly #rotation: number;
  /** Messages encrypted with the current session, by room. */
  readonly #used = new Map<string, number>();
  /** Room-key to-device messages not yet taken by the caller. */
  #toDevice: AppserviceToDevice[] = [];
  /** Megolm sessions created (room keys shared). */
  sessions = 0;

  private constructor(baseUrl: string, login: Login, machine: OlmMachine, options: RawSenderOptions) {
    this.#baseUrl = baseUrl;
    this.#token = login.accessToken;
    this.userId = login.userId;
    this.deviceId = login.deviceId;
    this.machine = machine;
    this.#recipient = options.recipient;
    this.#rotation = options.rotationMessages ?? 100;
  }

  /** Creates the in-memory machine and uploads its device keys and one-time keys to Synapse. */
  static async create(baseUrl: string, login: Login, options: RawSenderOptions): Promise<RawSender> {
    await initAsync();
    const machine = await OlmMachine.initialize(new UserId(login.userId), new DeviceId(login.deviceId));
    const sender = new RawSender(baseUrl, login, machine, options);
    await sender.drain();
    return sender;
  }

  async api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.#baseUrl}/_matrix/client${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const json = (await response.json()) as T & { errcode?: string; error?: string };
    if (!response.ok) throw new Error(`${this.userId}: ${method} ${path}: ${response.status} ${json.errcode}: ${json.error}`);
    return json;
  }

  async #send(request: Request): Promise<void> {
    const body = JSON.parse(request.body) as unknown;
    let response: unknown;
    if (request instanceof KeysUploadRequest) response = await this.api('POST', '/v3/keys/upload', body);
    else if (request instanceof KeysQueryRequest) response = await this.api('POST', '/v3/keys/query', body);
    else if (request instanceof KeysClaimRequest) response = await this.api('POST', '/v3/keys/claim', body);
    else if (request instanceof SignatureUploadRequest) response = await this.api('POST', '/v3/keys/signatures/upload', body);
    else if (request instanceof ToDeviceRequest) {
      response = await this.api('PUT', `/v3/sendToDevice/${encodeURIComponent(request.event_type)}/${encodeURIComponent(request.txn_id)}`, body);
    } else throw new Error(`unexpected outgoing request ${(request as object).constructor.name}`);
    if (request.id !== undefined) await this.machine.markRequestAsSent(request.id, request.type, JSON.stringify(response));
  }

  /** Sends whatever the engine queued (key uploads, queries) through Synapse. */
  async drain(): Promise<void> {
    for (let round = 0; round < 5; round++) {
      const requests = (await this.machine.outgoingRequests()) as Request[];
      if (requests.length === 0) return;
      for (const request of requests) await this.#send(request);
    }
  }

  /**
   * Makes sure an Olm session with each of `recipient`'s devices exists (keys queried and one-time
   * keys claimed through Synapse), creates the room's Megolm session if needed and returns the
   * room-key to-device messages, marked as sent, for the caller to deliver to the bot itself.
   */
  async #roomKey(roomId: string, recipient: string): Promise<AppserviceToDevice[]> {
    await this.machine.updateTrackedUsers([new UserId(recipient)]);
    await this.drain();
    const claim = await this.machine.getMissingSessions([new UserId(recipient)]);
    if (claim) await this.#send(claim);
    const settings = new EncryptionSettings();
    settings.rotationPeriodMessages = BigInt(this.#rotation);
    settings.rotationPeriod = 7n * 24n * 3600n * 1_000_000n;
    const requests = await this.machine.shareRoomKey(new RoomId(roomId), [new UserId(recipient)], settings);
    const events: AppserviceToDevice[] = [];
    for (const request of requests) {
      const body = JSON.parse(request.body) as { messages: Record<string, Record<string, Record<string, unknown>>> };
      for (const [user, devices] of Object.entries(body.messages)) {
        for (const [device, content] of Object.entries(devices)) {
          events.push({ type: request.event_type, sender: this.userId, content, to_user_id: user, to_device_id: device });
        }
      }
      await this.machine.markRequestAsSent(request.id, request.type, '{}');
    }
    return events;
  }

  /**
   * The `content` of an `m.room.encrypted` event carrying an `m.text` message. Every
   * `rotationMessages` messages a new Megolm session is made (an expired one would make
   * encryptRoomEvent abort the process); its room key waits in `takeToDevice()`.
   */
  async encryptText(roomId: string, body: string): Promise<Record<string, unknown>> {
    const used = this.#used.get(roomId);
    if (used === undefined || used >= this.#rotation) {
      const keys = await this.#roomKey(roomId, this.#recipient);
      if (keys.length === 0) throw new Error(`${this.userId}: shareRoomKey produced no to-device message for a new session`);
      this.#toDevice.push(...keys);
      this.sessions++;
      this.#used.set(roomId, 0);
    }
    const encrypted = await this.machine.encryptRoomEvent(new RoomId(roomId), 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }));
    this.#used.set(roomId, (this.#used.get(roomId) ?? 0) + 1);
    return JSON.parse(encrypted) as Record<string, unknown>;
  }

  /** Room keys of sessions started since the last call: to go into the next transaction, as Synapse would deliver them. */
  takeToDevice(): AppserviceToDevice[] {
    const out = this.#toDevice;
    this.#toDevice = [];
    return out;
  }

  close(): void {
    this.machine.close();
  }
}

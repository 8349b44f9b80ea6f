/**
 * A person on the homeserver, driven over the real client-server API (plain HTTP, no SDK):
 * creates rooms, invites, sends text, and watches the timeline through a /sync loop.
 */

export interface TimelineEvent {
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  state_key?: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
}

export class Human {
  readonly userId: string;
  readonly #baseUrl: string;
  readonly #token: string;
  readonly events: TimelineEvent[] = [];
  readonly #waiters = new Set<() => void>();
  #since: string | undefined;
  #running = false;
  #loop: Promise<void> | undefined;
  #abort = new AbortController();
  #txn = 0;

  constructor(baseUrl: string, userId: string, accessToken: string) {
    this.#baseUrl = baseUrl;
    this.userId = userId;
    this.#token = accessToken;
  }

  async request<T = Record<string, unknown>>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const response = await fetch(`${this.#baseUrl}/_matrix/client${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
      signal: signal ?? AbortSignal.timeout(30_000),
    });
    const json = (await response.json()) as T & { errcode?: string; error?: string };
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${json.errcode}: ${json.error}`);
    return json;
  }

  async createRoom(options: { name?: string; invite?: string[]; encrypted?: boolean; isDirect?: boolean } = {}): Promise<string> {
    const initial_state = options.encrypted ? [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] : [];
    const result = await this.request<{ room_id: string }>('POST', '/v3/createRoom', {
      name: options.name,
      preset: 'private_chat',
      invite: options.invite ?? [],
      is_direct: options.isDirect ?? false,
      initial_state,
    });
    return result.room_id;
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.request('POST', `/v3/rooms/${encodeURIComponent(roomId)}/invite`, { user_id: userId });
  }

  /** Removes a member; on an invited user this withdraws the invite. */
  async kick(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.request('POST', `/v3/rooms/${encodeURIComponent(roomId)}/kick`, { user_id: userId, reason });
  }

  async ban(roomId: string, userId: string, reason?: string): Promise<void> {
    await this.request('POST', `/v3/rooms/${encodeURIComponent(roomId)}/ban`, { user_id: userId, reason });
  }

  async join(roomId: string): Promise<void> {
    await this.request('POST', `/v3/join/${encodeURIComponent(roomId)}`, {});
  }

  async send(roomId: string, body: string): Promise<string> {
    const txn = `h${Date.now()}-${this.#txn++}`;
    const result = await this.request<{ event_id: string }>('PUT', `/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`, { msgtype: 'm.text', body });
    return result.event_id;
  }

  async membership(roomId: string, userId: string): Promise<string | undefined> {
    try {
      const state = await this.request<{ membership: string }>('GET', `/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.member/${encodeURIComponent(userId)}`);
      return state.membership;
    } catch {
      return undefined;
    }
  }

  /** Starts following the timeline from now on (earlier events are skipped). */
  async startSync(): Promise<void> {
    const first = await this.request<{ next_batch: string }>('GET', '/v3/sync?timeout=0&filter=' + encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 0 } } })));
    this.#since = first.next_batch;
    this.#running = true;
    this.#loop = this.#syncLoop();
  }

  async stopSync(): Promise<void> {
    this.#running = false;
    this.#abort.abort();
    await this.#loop?.catch(() => undefined);
  }

  async #syncLoop(): Promise<void> {
    while (this.#running) {
      try {
        const sync = await this.request<{ next_batch: string; rooms?: { join?: Record<string, { timeline?: { events?: TimelineEvent[] } }> } }>(
          'GET',
          `/v3/sync?timeout=5000&since=${encodeURIComponent(this.#since ?? '')}`,
          undefined,
          this.#abort.signal,
        );
        this.#since = sync.next_batch;
        for (const [roomId, room] of Object.entries(sync.rooms?.join ?? {})) {
          for (const event of room.timeline?.events ?? []) this.events.push({ ...event, room_id: roomId });
        }
        for (const wake of this.#waiters) wake();
      } catch (error) {
        if (!this.#running) return;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /** Waits until `count` events in the room match; returns them. */
  async waitFor(roomId: string, match: (e: TimelineEvent) => boolean, options: { count?: number; timeoutMs?: number } = {}): Promise<TimelineEvent[]> {
    const count = options.count ?? 1;
    const deadline = Date.now() + (options.timeoutMs ?? 20_000);
    for (;;) {
      const found = this.events.filter((e) => e.room_id === roomId && match(e));
      if (found.length >= count) return found;
      const left = deadline - Date.now();
      if (left <= 0) {
        const seen = this.events.filter((e) => e.room_id === roomId).map((e) => `${e.sender} ${e.type} ${String(e.content['body'] ?? e.content['membership'] ?? '')}`);
        throw new Error(`timed out waiting for ${count} matching event(s) in ${roomId}; seen:\n${seen.join('\n')}`);
      }
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /** Bot notices in the room after a given event (by timeline order). */
  noticesFrom(roomId: string, sender: string, afterEventId?: string): string[] {
    const inRoom = this.events.filter((e) => e.room_id === roomId);
    const start = afterEventId ? inRoom.findIndex((e) => e.event_id === afterEventId) + 1 : 0;
    return inRoom.slice(start).filter((e) => e.sender === sender && e.type === 'm.room.message').map((e) => String(e.content['body']));
  }
}

import type { RoomEvent } from '../matrix/events.ts';
import { MatrixError, p, type MatrixClient } from '../matrix/client.ts';

/**
 * What the crypto step must know about rooms to send into them: whether each is encrypted, and
 * who is in it (joined or invited: both must get the room key). Learned lazily from the
 * homeserver, then kept current from the room events that flow through the pipeline.
 */
export class RoomTracker {
  readonly #client: MatrixClient;
  readonly #self: string;
  readonly #encrypted = new Map<string, boolean>();
  readonly #members = new Map<string, Set<string>>();

  constructor(client: MatrixClient, self: string) {
    this.#client = client;
    this.#self = self;
  }

  /** Updates from a timeline event; returns users whose membership changed in an encrypted room. */
  observe(event: RoomEvent): string[] {
    if (event.type === 'm.room.encryption' && event.state_key === '') this.#encrypted.set(event.room_id, true);
    if (event.type !== 'm.room.member' || event.state_key === undefined) return [];
    const membership = event.content['membership'];
    if (event.state_key === this.#self && (membership === 'leave' || membership === 'ban')) {
      this.#members.delete(event.room_id);
      this.#encrypted.delete(event.room_id);
      return [];
    }
    const members = this.#members.get(event.room_id);
    if (!members) return this.#encrypted.get(event.room_id) ? [event.state_key] : [];
    if (membership === 'join' || membership === 'invite') members.add(event.state_key);
    else members.delete(event.state_key);
    return [event.state_key];
  }

  async isEncrypted(roomId: string): Promise<boolean> {
    const known = this.#encrypted.get(roomId);
    if (known !== undefined) return known;
    // Once encrypted, a room stays encrypted; "not encrypted" is re-checked only when unknown.
    const state = await this.#client.getState(roomId, 'm.room.encryption');
    const encrypted = state !== undefined && typeof state['algorithm'] === 'string';
    this.#encrypted.set(roomId, encrypted);
    return encrypted;
  }

  async members(roomId: string): Promise<string[]> {
    let members = this.#members.get(roomId);
    if (!members) {
      const response = await this.#client.request<{ chunk: RoomEvent[] }>('GET', p`/v3/rooms/${roomId}/members`, { retries: 2 }).catch((error: unknown) => {
        if (error instanceof MatrixError && error.errcode === 'M_FORBIDDEN') return { chunk: [] };
        throw error;
      });
      members = new Set(
        response.chunk
          .filter((e) => e.state_key !== undefined && (e.content['membership'] === 'join' || e.content['membership'] === 'invite'))
          .map((e) => e.state_key as string),
      );
      this.#members.set(roomId, members);
    }
    return [...members];
  }

  /** The bot's rooms that a user is in (for announcements about that user). */
  async roomsWith(userId: string): Promise<string[]> {
    const { joined_rooms: rooms } = await this.#client.request<{ joined_rooms: string[] }>('GET', '/v3/joined_rooms', { retries: 2 });
    const found: string[] = [];
    for (const roomId of rooms) if ((await this.members(roomId)).includes(userId)) found.push(roomId);
    return found;
  }
}

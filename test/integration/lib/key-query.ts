/** What a user's client learns from `/keys/query` about another user: their devices' keys and their master key. */
export interface PublishedKeys {
  readonly devices: Record<string, { keys: Record<string, string> }>;
  readonly masterKey: string | undefined;
}

/** `/keys/query` for `userId`, as the holder of `accessToken` (a plain request: no client state involved). */
export async function queryKeys(baseUrl: string, accessToken: string, userId: string): Promise<PublishedKeys> {
  const res = await fetch(`${baseUrl}/_matrix/client/v3/keys/query`, {
    method: 'POST',
    headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ device_keys: { [userId]: [] } }),
  });
  const json = (await res.json()) as {
    device_keys?: Record<string, Record<string, { keys: Record<string, string> }>>;
    master_keys?: Record<string, { keys: Record<string, string> }>;
  };
  return { devices: json.device_keys?.[userId] ?? {}, masterKey: Object.values(json.master_keys?.[userId]?.keys ?? {})[0] };
}

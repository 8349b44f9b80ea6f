/**
 * The process that test/unit/store-crash.test.ts kills. It opens the crypto store as the bot does
 * (passphrase on) and prints one JSON line per step, written synchronously, so that a line on
 * stdout is something that left the process:
 *
 *   setup <dir>  a device with an Olm session to alice and a Megolm session shared with her
 *   run <dir>    first {"open": …} (device, replaced?, every inbound session id, and a fresh
 *                encryption), then forever: a new room key ({"key": id}) or an encrypted
 *                message ({"sent": "session#index"}) — until it is killed
 */
import { writeSync } from 'node:fs';
import { EncryptionSettings, RoomId, UserId, type OlmMachine } from '@matrix-org/matrix-sdk-crypto-wasm';
import { openDeviceCrypto, type DeviceApi } from '../../src/crypto/device-store.ts';
import { megolmIdentity } from '../../src/crypto/megolm-index.ts';
import { silentLogger } from '../../src/log.ts';
import { EngineHomeserver, exportedRoomKeys, memoryDevice } from '../../src/dev/engine-homeserver.ts';

const BOT = '@bot:example.org';
const ALICE = '@alice:example.org';
const ROOM = '!crash:example.org';
const say = (line: unknown): void => void writeSync(1, JSON.stringify(line) + '\n');
const devices: DeviceApi = { ensure: async () => 'existed', remove: async () => undefined, list: async () => [] };

/** Encrypts one message into the room (sharing the room key first when the session rotated). */
async function send(machine: OlmMachine, body: string): Promise<string> {
  const room = new RoomId(ROOM);
  for (const request of await machine.shareRoomKey(room, [new UserId(ALICE)], new EncryptionSettings())) {
    // What the engine hands out here is committed already: "sending" it is marking it sent.
    await machine.markRequestAsSent(request.id, request.type, '{}');
  }
  const id = megolmIdentity(JSON.parse(await machine.encryptRoomEvent(room, 'm.room.message', JSON.stringify({ msgtype: 'm.text', body }))) as Record<string, unknown>);
  return `${id?.sessionId}#${id?.index}`;
}

const [mode, dir] = process.argv.slice(2);
if (!dir) throw new Error('usage: store-crash-child.ts setup|run <dir>');
const { machine, deviceId, replaced } = await openDeviceCrypto({ userId: BOT, dir, passphrase: 'crash test', devices, freshDeviceId: 'CRASHBOT', logger: silentLogger() });

if (mode === 'setup') {
  const hs = new EngineHomeserver();
  await hs.drain(machine);
  const alice = await memoryDevice(ALICE, 'ALICEDEVICE', hs);
  await hs.send(machine, [ALICE], ROOM, 'hello', '$setup');
  alice.close();
  say({ deviceId });
  process.exit(0);
}

const sessions = (JSON.parse(await machine.exportRoomKeys(() => true)) as Array<{ session_id: string }>).map((k) => k.session_id);
say({ open: { deviceId, replaced: replaced?.reason ?? null, sessions, sent: await send(machine, 'first after start') } });
for (let i = 0; ; i++) {
  if (i % 2 === 0) {
    const [key] = JSON.parse(exportedRoomKeys(1, `crash${process.pid}-${i}`)) as Array<{ session_id: string }>;
    await machine.importExportedRoomKeys(JSON.stringify([key]), () => undefined);
    say({ key: key?.session_id });
  } else {
    say({ sent: await send(machine, `message ${i}`) });
  }
}

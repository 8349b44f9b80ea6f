/**
 * `device.json` beside the crypto store: which Matrix device the store belongs to, readable by an
 * operator without opening the store. It also tells a lost store (the file is there, the store is
 * not) from a first start. Written atomically (temp file 0600, fsync, rename, fsync directory).
 */
import { randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const DEVICE_FILE = 'device.json';

/** Identity of the Matrix device whose crypto store this is. */
export interface DeviceInfo {
  userId: string;
  deviceId: string;
  /** ISO 8601 time the device's store was created. */
  created: string;
}

/** Filesystem calls used for writing; injectable so tests can simulate failures. */
export interface DeviceFileFs {
  open: typeof nodeFs.open;
  rename: typeof nodeFs.rename;
  unlink: typeof nodeFs.unlink;
}

export const defaultFs: DeviceFileFs = { open: nodeFs.open, rename: nodeFs.rename, unlink: nodeFs.unlink };

export function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

export function isDeviceInfo(v: unknown): v is DeviceInfo {
  const d = v as DeviceInfo | null;
  return typeof d === 'object' && d !== null && typeof d.userId === 'string' && typeof d.deviceId === 'string' && typeof d.created === 'string';
}

/** Writes `data` to `path` atomically; on failure the temp file is removed and `path` is untouched. */
export async function writeFileAtomic(path: string, data: Uint8Array, fs: DeviceFileFs = defaultFs): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await fs.open(tmp, 'wx', 0o600);
  try {
    try {
      let off = 0;
      while (off < data.byteLength) off += (await fh.write(data, off, data.byteLength - off)).bytesWritten;
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.rename(tmp, path);
  } catch (err) {
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
  const dh = await nodeFs.open(dir, 'r');
  try {
    await dh.sync();
  } catch (err) {
    // Some filesystems cannot fsync a directory; the rename is then as durable as they make it.
    const code = errCode(err);
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  } finally {
    await dh.close();
  }
}

export type DeviceFile = { kind: 'none' } | { kind: 'ok'; device: DeviceInfo } | { kind: 'bad'; reason: string };

export async function readDeviceFile(dir: string): Promise<DeviceFile> {
  const path = join(dir, DEVICE_FILE);
  let text: string;
  try {
    text = await nodeFs.readFile(path, 'utf8');
  } catch (err) {
    if (errCode(err) === 'ENOENT') return { kind: 'none' };
    throw err;
  }
  try {
    const v: unknown = JSON.parse(text);
    if (!isDeviceInfo(v)) return { kind: 'bad', reason: `${path} lacks userId/deviceId/created` };
    return { kind: 'ok', device: { userId: v.userId, deviceId: v.deviceId, created: v.created } };
  } catch (err) {
    return { kind: 'bad', reason: `${path} is not valid JSON: ${(err as Error).message}` };
  }
}

export async function writeDeviceFile(dir: string, device: DeviceInfo, fs: DeviceFileFs = defaultFs): Promise<void> {
  await writeFileAtomic(join(dir, DEVICE_FILE), Buffer.from(JSON.stringify(device, null, 2) + '\n'), fs);
}

import { targetLabel, type DeploymentStatus, type DeploymentTarget, type KubeError, type ScaleResult } from '../kube/kube.ts';
import type { Approval } from '../matrix/incoming.ts';
import { COMMANDS } from './commands.ts';

/** A reply as plain text (the body every client shows) and simple HTML. */
export interface Reply {
  readonly text: string;
  readonly html: string;
}

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A reply that is just text (escaped for the HTML side). */
export function plain(text: string): Reply {
  return { text, html: escapeHtml(text) };
}

/** How chat names a target: its configured name, else its Deployment's. */
export const shown = targetLabel;

/** A target with where it is: `openclaw (namespace agents)`, `comfy (Deployment comfyui, namespace media)`. */
export const placed = (t: DeploymentTarget): string =>
  shown(t) === t.name ? `${t.name} (namespace ${t.namespace})` : `${shown(t)} (Deployment ${t.name}, namespace ${t.namespace})`;

/** Said under the command list when reaction buttons are on. */
const BUTTONS_TEXT = 'On a phone: react ▶️, ⏹️ or 🔄 to my status and start/stop replies to start, stop or see the status.';

/** A command word with the target's place marked (`start NAME 2h`), for the list when there are several. */
function named(alias: string, name: string): string {
  const [verb = '', ...rest] = alias.split(' ');
  if (verb === 'help' || verb === 'approve') return alias;
  return [verb, verb === 'status' ? `[${name}]` : name, ...rest].join(' ');
}

/**
 * The command list. `targets`: those the reader may control from here; `several`: the bot has more
 * than one target, so commands name theirs (`start comfy`) and the list says which there are.
 * `buttons`: reaction buttons are on (bot.reactionButtons), so the list says how to use them.
 */
export function help(targets: readonly DeploymentTarget[], prefix: string, buttons = false, several = false): Reply {
  const word = (alias: string): string => (prefix ? `${prefix} ${alias}` : alias);
  const lines = COMMANDS.map((c) => ({ words: c.aliases.map((a) => word(several ? named(a, 'NAME') : a)), summary: c.summary }));
  const head = !several
    ? { text: `Commands for ${placed(targets[0]!)}:`, html: `Commands for <b>${escapeHtml(placed(targets[0]!))}</b>:` }
    : { text: 'Commands (NAME: one of the targets below):', html: 'Commands (<code>NAME</code>: one of the targets below):' };
  const tail = !several ? [] : targets.length === 0
    ? [plain('There is no target you may control from this room.')]
    : [plain(`Targets: ${targets.map((t) => placed(t)).join('; ')}.`)];
  return {
    text: [head.text, ...lines.map((l) => `• ${l.words.join(' / ')}: ${l.summary}`), ...tail.map((t) => t.text), ...(buttons ? [BUTTONS_TEXT] : [])].join('\n'),
    html:
      `${head.html}<ul>` +
      lines.map((l) => `<li>${l.words.map((w) => `<code>${escapeHtml(w)}</code>`).join(' / ')}: ${escapeHtml(l.summary)}</li>`).join('') +
      '</ul>' + tail.map((t) => `${t.html}<br>`).join('') + (buttons ? escapeHtml(BUTTONS_TEXT) : ''),
  };
}

/** The first words in a room; `list`: the command list (help). */
export function hello(targets: readonly DeploymentTarget[], list: Reply): Reply {
  const what = targets.length === 1 ? placed(targets[0]!) : targets.length === 0 ? 'nothing you may control from this room' : targets.map((t) => shown(t)).join(', ');
  return { text: `👋 Hello! I start and stop ${what}.\n${list.text}`, html: `👋 Hello! I start and stop <b>${escapeHtml(what)}</b>.<br>${list.html}` };
}

/** The old bot's echo of an accepted command. */
export function echo(word: string): Reply {
  return plain(`🦞 ${word}`);
}

/** `list`: the command list (help). */
export function unknown(word: string, list: Reply): Reply {
  return { text: `Unknown command "${word}".\n${list.text}`, html: `Unknown command <code>${escapeHtml(word)}</code>.<br>${list.html}` };
}

/** `followed`: this message will be edited as the rollout moves, so it does not send the reader to `status`. */
export function scaled(target: DeploymentTarget, result: ScaleResult, followed = false): Reply {
  const whenReady = followed ? ' ⏳ This message follows it.' : ' Say "status" to see when it is ready.';
  if (result.readBack) {
    // The change is in place, but its "from" is unknown: say what holds now, and why it took a moment.
    const why = 'the Kubernetes API\'s answer was lost, so I read the Deployment back to check';
    return result.desired === 0
      ? plain(`⏹ ${shown(target)} is off (0 desired; ${why}).`)
      : plain(`▶️ ${shown(target)} is on (${result.desired} desired; ${why}).${whenReady}`);
  }
  if (result.previous === result.desired) {
    return plain(result.desired === 0 ? `${shown(target)} is already off (0 replicas).` : `${shown(target)} is already on (${result.desired} desired).${followed ? '' : ' Say "status" to see if it is ready.'}`);
  }
  return result.desired === 0
    ? plain(`⏹ Stopping ${shown(target)}: replicas ${result.previous} → 0.`)
    : plain(`▶️ Starting ${shown(target)}: replicas ${result.previous} → ${result.desired}.${whenReady}`);
}

const STATE_WORDS: Record<DeploymentStatus['state'], string> = {
  off: '⚪ off',
  starting: '🟡 starting',
  running: '🟢 running',
  stopping: '🟠 stopping',
};

/** `run`: a second line about the run started from chat (since when, by whom, when it stops). */
/** `waiting`: what a start not yet ready waits for (from its pods), said when nothing is wrong. */
export function status(target: DeploymentTarget, s: DeploymentStatus, run?: string, waiting?: string): Reply {
  const counts = `desired ${s.desired}, ready ${s.ready}, available ${s.available}, updated ${s.updated}`;
  const lines = [...(s.problem ? [`⚠️ It is not getting ready: ${s.problem}.`] : waiting ? [`⏳ ${waiting[0]!.toUpperCase()}${waiting.slice(1)}.`] : []), ...(run ? [run] : [])];
  return {
    text: `${shown(target)} is ${STATE_WORDS[s.state]}: ${counts}.${lines.map((l) => `\n${l}`).join('')}`,
    html: `<b>${escapeHtml(shown(target))}</b> is <b>${STATE_WORDS[s.state]}</b>: ${counts}.${lines.map((l) => `<br>${escapeHtml(l)}`).join('')}`,
  };
}

/** One target's line in the status of all targets: `🟢 comfy: running, 1 of 1 ready; stops at 16:02 UTC, in 1 h.`, `⚪ openclaw: off.` */
export function statusLine(target: DeploymentTarget, s: DeploymentStatus, stops?: string): Reply {
  const [emoji, word] = STATE_WORDS[s.state].split(' ') as [string, string];
  const counts = s.state === 'off' ? word : s.state === 'stopping' ? `${word}, ${s.ready} ${s.ready === 1 ? 'pod' : 'pods'} still ready` : `${word}, ${s.ready} of ${s.desired} ready`;
  const parts = [counts, ...(stops ? [stops] : []), ...(s.problem ? [`⚠️ not getting ready: ${s.problem}`] : [])];
  return { text: `${emoji} ${shown(target)}: ${parts.join('; ')}.`, html: `${emoji} <b>${escapeHtml(shown(target))}</b>: ${escapeHtml(parts.join('; '))}.` };
}

/** A target's line when its status cannot be read (its RBAC is missing, it does not exist, …). */
export function statusLineFailure(target: DeploymentTarget, why: string): Reply {
  return { text: `⚠️ ${shown(target)}: could not get its status: ${why}`, html: `⚠️ <b>${escapeHtml(shown(target))}</b>: could not get its status: ${escapeHtml(why)}` };
}

/** Several replies as one message, a line each. */
export function lines(head: string, parts: readonly Reply[]): Reply {
  return { text: [head, ...parts.map((p) => p.text)].join('\n'), html: [escapeHtml(head), ...parts.map((p) => p.html)].join('<br>') };
}

/** A reply with a sentence added (` ⏲ It stops automatically at …`). */
export function withSentence(reply: Reply, sentence: string): Reply {
  return sentence ? { text: reply.text + sentence, html: reply.html + escapeHtml(sentence) } : reply;
}

export function kubeFailure(action: string, target: DeploymentTarget, error: KubeError): Reply {
  if (error.kind === 'unknown-outcome') {
    const done = action === 'stop' ? 'stopped' : action === 'start' ? 'started' : 'changed';
    return plain(`⚠️ I cannot tell whether ${shown(target)} was ${done}: ${error.human}. Say "status" to see its state.`);
  }
  return plain(`⚠️ Could not ${action} ${shown(target)}: ${error.human}`);
}

export function internalFailure(action: string, target: DeploymentTarget): Reply {
  return plain(`⚠️ Could not ${action} ${shown(target)}: an internal error occurred; the operator can find it in the bot's log.`);
}

export function tooOld(word: string, ageSeconds: number, maxSeconds: number): Reply {
  const age = ageSeconds >= 120 ? `${Math.round(ageSeconds / 60)} minutes` : `${Math.round(ageSeconds)} seconds`;
  return plain(`⏱ Not running "${word}": it reached me ${age} after it was sent (the limit is ${Math.round(maxSeconds / 60)} minutes). Send it again if you still want it.`);
}

/** A command whose handling was cut short by a restart: it is not run again, but the state is shown. */
export function interrupted(word: string, now: Reply): Reply {
  const lead = `⚠️ I was restarted while handling "${word}", so it may or may not have run; I did not run it again. Now: `;
  return { text: lead + now.text, html: escapeHtml(lead) + now.html };
}

/** The operator's command that approves a device (or verifies it, under the policy "verified"). */
const verifyCommand = (userId: string, deviceId: string): string => `openclaw-k8s-toggle-operator trust verify ${userId} ${deviceId}`;

/** Both ways to approve `deviceId`: from a device the bot obeys (`approvers`), or by the operator. */
function howToApprove(userId: string, deviceId: string, approvers: readonly string[], prefix: string): string {
  if (approvers.length === 0) {
    return `No device of yours that I obey is still logged in, so only the operator can approve ${deviceId}: ask them to run "${verifyCommand(userId, deviceId)}".`;
  }
  const listed = approvers.slice(0, 3).join(' or ') + (approvers.length > 3 ? ' or another' : '');
  return `To approve ${deviceId}, send "${prefix ? `${prefix} ` : ''}approve ${deviceId}" from a device of yours I already obey (${listed}), ` +
    `or ask the operator to run "${verifyCommand(userId, deviceId)}".`;
}

/**
 * A command from a device the trust policy refuses. `approvers` (a user without cross-signing under
 * "tofu"): the device can be approved, and the reply says how, both ways. `approving`: the command was
 * `approve` of that device id (a device cannot approve itself, nor can an unapproved one approve others).
 */
export function untrustedDevice(o: { userId: string; deviceId: string | undefined; why: string; approvers?: readonly string[] | undefined; prefix: string; approving?: string | undefined }): Reply {
  if (!o.approvers || !o.deviceId) {
    return plain(`🔒 Not running this: it came from a device I do not trust (${o.why}). Verify the device from your other session, or ask the operator to re-pin your identity.`);
  }
  const how = howToApprove(o.userId, o.deviceId, o.approvers, o.prefix);
  if (o.approving === o.deviceId) return plain(`🔒 Not approving ${o.deviceId}: a device cannot approve itself. ${how}`);
  if (o.approving !== undefined) return plain(`🔒 Not approving ${o.approving}: this device (${o.deviceId}) is not approved itself, so it cannot approve others. ${how}`);
  return plain(`🔒 Not running this: ${o.why}. I obey a further device of yours only once it is approved. ${how}`);
}

/** The answer to `approve DEVICEID` from a device the bot obeys (`outcome` undefined: no device or no encryption to judge it by). */
export function approval(deviceId: string, userId: string, prefix: string, outcome: Approval | undefined): Reply {
  const word = `${prefix ? `${prefix} ` : ''}approve DEVICEID`;
  if (deviceId === '') return plain(`Say which device: "${word}", with the id from my refusal or from your client's list of sessions.`);
  if (!outcome) return plain(`"approve" works only in an encrypted room: there I know which of your devices sent it.`);
  switch (outcome.kind) {
    case 'approved':
      return plain(outcome.already ? `✅ Device ${deviceId} is approved already: I obey its commands.` : `✅ Approved device ${deviceId} of ${userId}: I obey its commands from now on.`);
    case 'not-applicable':
      return plain(`Nothing to approve: ${outcome.why}.`);
    case 'refused':
      switch (outcome.reason) {
        case 'self':
          return plain(`🔒 Not approving ${deviceId}: a device cannot approve itself.`);
        case 'approver-not-pinned':
          return plain(`🔒 Not approving ${deviceId}: this device is not one I obey without approval, so it cannot approve others. The operator can run "${verifyCommand(userId, deviceId)}".`);
        case 'unknown-device':
          return plain(`⚠️ I know no device ${deviceId} of ${userId}: check the id (case matters) in your client's list of sessions.`);
      }
  }
}

/** The backstop gave up on a message whose handling kept failing. */
export function gaveUp(): Reply {
  return plain('⚠️ I gave up on this message: handling it failed again and again, so I will not try it again (the operator finds it in my log as a dead letter). Say "status" to see the current state, and send the command again if you still want it.');
}

/** The m.notice content of a reply: bots answer with notices, in plain text and simple HTML. */
export function noticeContent(reply: Reply): Record<string, unknown> {
  return { msgtype: 'm.notice', body: reply.text, format: 'org.matrix.custom.html', formatted_body: reply.html };
}

/**
 * An edit of the bot's message `messageId` (`m.replace`): clients with edits show `m.new_content` in
 * its place; the others show this event's own body, the new text marked with "* " as edits are.
 */
export function editContent(messageId: string, reply: Reply): Record<string, unknown> {
  return {
    msgtype: 'm.notice', body: `* ${reply.text}`, format: 'org.matrix.custom.html', formatted_body: `* ${reply.html}`,
    'm.new_content': noticeContent(reply),
    'm.relates_to': { rel_type: 'm.replace', event_id: messageId },
  };
}

import type { DeploymentStatus, DeploymentTarget, KubeError, ScaleResult } from '../kube/kube.ts';
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

const name = (t: DeploymentTarget): string => `${t.name} (namespace ${t.namespace})`;

/** Said under the command list when reaction buttons are on. */
const BUTTONS_TEXT = 'On a phone: react ▶️, ⏹️ or 🔄 to my status and start/stop replies to start, stop or see the status.';

/** `buttons`: reaction buttons are on (bot.reactionButtons), so the list says how to use them. */
export function help(target: DeploymentTarget, prefix: string, buttons = false): Reply {
  const word = (alias: string): string => (prefix ? `${prefix} ${alias}` : alias);
  const lines = COMMANDS.map((c) => ({ words: c.aliases.map(word), summary: c.summary }));
  return {
    text: [`Commands for ${name(target)}:`, ...lines.map((l) => `• ${l.words.join(' / ')}: ${l.summary}`), ...(buttons ? [BUTTONS_TEXT] : [])].join('\n'),
    html:
      `Commands for <b>${escapeHtml(name(target))}</b>:<ul>` +
      lines.map((l) => `<li>${l.words.map((w) => `<code>${escapeHtml(w)}</code>`).join(' / ')}: ${escapeHtml(l.summary)}</li>`).join('') +
      '</ul>' + (buttons ? escapeHtml(BUTTONS_TEXT) : ''),
  };
}

export function hello(target: DeploymentTarget, prefix: string, buttons = false): Reply {
  const list = help(target, prefix, buttons);
  return { text: `👋 Hello! I start and stop ${name(target)}.\n${list.text}`, html: `👋 Hello! I start and stop <b>${escapeHtml(name(target))}</b>.<br>${list.html}` };
}

/** The old bot's echo of an accepted command. */
export function echo(word: string): Reply {
  return plain(`🦞 ${word}`);
}

export function unknown(word: string, target: DeploymentTarget, prefix: string, buttons = false): Reply {
  const list = help(target, prefix, buttons);
  return { text: `Unknown command "${word}".\n${list.text}`, html: `Unknown command <code>${escapeHtml(word)}</code>.<br>${list.html}` };
}

/** `followed`: this message will be edited as the rollout moves, so it does not send the reader to `status`. */
export function scaled(target: DeploymentTarget, result: ScaleResult, followed = false): Reply {
  const whenReady = followed ? ' ⏳ This message follows it.' : ' Say "status" to see when it is ready.';
  if (result.readBack) {
    // The change is in place, but its "from" is unknown: say what holds now, and why it took a moment.
    const why = 'the Kubernetes API\'s answer was lost, so I read the Deployment back to check';
    return result.desired === 0
      ? plain(`⏹ ${target.name} is off (0 desired; ${why}).`)
      : plain(`▶️ ${target.name} is on (${result.desired} desired; ${why}).${whenReady}`);
  }
  if (result.previous === result.desired) {
    return plain(result.desired === 0 ? `${target.name} is already off (0 replicas).` : `${target.name} is already on (${result.desired} desired).${followed ? '' : ' Say "status" to see if it is ready.'}`);
  }
  return result.desired === 0
    ? plain(`⏹ Stopping ${target.name}: replicas ${result.previous} → 0.`)
    : plain(`▶️ Starting ${target.name}: replicas ${result.previous} → ${result.desired}.${whenReady}`);
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
    text: `${target.name} is ${STATE_WORDS[s.state]}: ${counts}.${lines.map((l) => `\n${l}`).join('')}`,
    html: `<b>${escapeHtml(target.name)}</b> is <b>${STATE_WORDS[s.state]}</b>: ${counts}.${lines.map((l) => `<br>${escapeHtml(l)}`).join('')}`,
  };
}

/** A reply with a sentence added (` ⏲ It stops automatically at …`). */
export function withSentence(reply: Reply, sentence: string): Reply {
  return sentence ? { text: reply.text + sentence, html: reply.html + escapeHtml(sentence) } : reply;
}

export function kubeFailure(action: string, target: DeploymentTarget, error: KubeError): Reply {
  if (error.kind === 'unknown-outcome') {
    const done = action === 'stop' ? 'stopped' : action === 'start' ? 'started' : 'changed';
    return plain(`⚠️ I cannot tell whether ${target.name} was ${done}: ${error.human}. Say "status" to see its state.`);
  }
  return plain(`⚠️ Could not ${action} ${target.name}: ${error.human}`);
}

export function internalFailure(action: string, target: DeploymentTarget): Reply {
  return plain(`⚠️ Could not ${action} ${target.name}: an internal error occurred; the operator can find it in the bot's log.`);
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

/**
 * Crash consistency of outbound DSNs (issue 11, suite 1): the customer refuses some recipients with
 * 550 after the turn, so the relay owes their senders a DSN, which it sends through a smarthost (a
 * recording loopback MX, slowed down so kills land while DSNs are in flight). The relay is SIGKILLed
 * while they go out. In the dead relay's file every refused recipient must still be accounted for:
 * not yet attempted (queued), failed and waiting for its DSN, inside a DSN waiting in the outbound
 * table, or inside a DSN the MX accepted. None may vanish; a DSN sent twice is a duplicate (allowed).
 * After the last restart every one of them must have reached the MX.
 */
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { makeMessage } from "./lib/messages.ts";
import { startPull, writeSecret } from "./lib/pull.ts";
import { inspectChecked, recipientPairs } from "./lib/queue_db.ts";
import { type Account, newRelay, sleep } from "./lib/relay.ts";
import { Sink } from "./lib/sink.ts";
import { fillRecipients } from "./lib/traffic.ts";

const PLAN = {
  ci: { kills: 2, batch: 300 },
  heavy: { kills: 10, batch: 600 },
};
const ACCOUNT: Account = { user: "bounce", secret: "bounce-secret-0123456789", domains: ["d.chaos.test"] };
const DOMAIN = ACCOUNT.domains[0]!;
/** Pause before each smarthost reply: about 100 DSNs a second with 4 sent at a time. */
const MX_REPLY_DELAY_MS = 4;
/** Longest wait for the first DSN after a pull starts, and for the outbound queue to drain. */
const DSN_WAIT_MS = 30_000;
const PULL_LIMIT_MS = 120_000;
/** Owed DSNs still pending below which the next round sends more mail first. */
const REFILL_BELOW = 50;
/** The customer refuses local parts starting with "x". */
const refused = (address: string) => address.startsWith("x");

/** Runs the DSN crash part; figures go to the suite report as `dsn.*`. */
export async function crashDsn(ctx: SuiteContext): Promise<void> {
  const plan = ctx.heavy ? PLAN.heavy : PLAN.ci;
  const { rng } = ctx;
  const report = ctx.report.part("dsn");
  const tag = `d${report.seed}`;
  const idPattern = new RegExp(`<chaos-${tag}-\\d+@chaos\\.test>`, "g");
  const secretFile = writeSecret(ctx.path("dsn-secret"), ACCOUNT.secret);

  /** DSNs the smarthost accepted, per (original Message-ID, failed recipient). */
  const dsns = new Map<string, number>();
  const mx = await new Sink({
    replyDelayMs: MX_REPLY_DELAY_MS,
    onMessage: (m) => {
      const text = m.data.toString("latin1");
      const origin = text.match(idPattern)?.[0];
      for (const f of text.matchAll(/^Final-Recipient:\s*rfc822;\s*(\S+)/gim)) {
        const key = `${origin} ${f[1]}`;
        dsns.set(key, (dsns.get(key) ?? 0) + 1);
      }
    },
  }).listen();
  ctx.scope.defer("close smarthost", () => mx.close());
  const delivered = new Set<string>();
  const customer = await new Sink({
    rcptReply: (a) => (refused(a) ? `550 5.1.1 <${a}>: Recipient address rejected: chaos` : "250 2.1.5 Ok"),
    onMessage: (m) => {
      const id = /^Message-ID:\s*(<[^>]+>)/im.exec(m.data.subarray(0, 4096).toString("latin1"))?.[1];
      for (const r of m.rcpts) delivered.add(`${id} ${r}`);
    },
  }).listen();
  ctx.scope.defer("close customer", () => customer.close());

  const { relay, dataDir } = newRelay(ctx, "dsn", [ACCOUNT], {
    atrnMaxPerMinute: 1000,
    smarthost: `127.0.0.1:${mx.port}`,
    smarthostTls: "opportunistic",
  });

  /** Refused recipients (a DSN is owed) and accepted ones (the customer must get them). */
  const owed = new Set<string>();
  const wanted = new Set<string>();
  let made = 0;
  const refill = async () => {
    await fillRecipients(
      {
        port: relay.ports.smtp,
        rng,
        count: plan.batch,
        make: () => {
          const n = made++;
          const rcpts = [`${rng.chance(0.7) ? "x" : "y"}${n}@${DOMAIN}`];
          if (rng.chance(0.4)) rcpts.push(`${rng.chance(0.5) ? "x" : "y"}${n}b@${DOMAIN}`);
          return makeMessage(rng, tag, n, { from: `s${n}@remote.chaos.test`, rcpts }, { largeShare: 0 });
        },
      },
      report,
      (r) => (refused(r) ? owed : wanted),
    );
  };

  let checked = 0;
  let pending = 0;
  const verify = (k: string) => {
    const inspection = inspectChecked(join(dataDir, "queue.db"), report.fail, k);
    const inQueue = recipientPairs(inspection);
    const inOutbound = new Set<string>();
    for (const o of inspection.outbound) {
      const origin = o.body.match(idPattern)?.[0];
      for (const f of o.body.matchAll(/^Final-Recipient:\s*rfc822;\s*(\S+)/gim)) {
        inOutbound.add(`${origin} ${f[1]}`);
      }
    }
    let losses = 0;
    pending = 0;
    for (const pair of owed) {
      checked++;
      const where = inQueue.get(pair) ?? (inOutbound.has(pair) ? "outbound" : dsns.has(pair) ? "sent" : null);
      if (where === null && losses++ < 5) report.fail(`${k}: LOST the DSN for ${pair}`);
      if (where !== "sent" && where !== null) pending++;
    }
    for (const pair of wanted) {
      checked++;
      if (!delivered.has(pair) && !inQueue.has(pair) && losses++ < 5) report.fail(`${k}: LOST ${pair}`);
    }
    report.add("losses", losses);
  };
  const pull = () =>
    startPull({
      binary: ctx.binary,
      odmrPort: relay.ports.odmr,
      sinkPort: customer.port,
      user: ACCOUNT.user,
      secretFile,
      domains: [DOMAIN],
      limitMs: PULL_LIMIT_MS,
    });

  report.add("losses", 0);
  await relay.start();
  for (let k = 1; k <= plan.kills; k++) {
    if (!relay.running) await relay.start();
    // Few DSNs left to owe: more mail, so this kill too lands while DSNs go out.
    if (k === 1 || pending < REFILL_BELOW) await refill();
    const status = await relay.status();
    const before = mx.messages;
    const running = status.queue.recipients > 0 ? pull() : null;
    const deadline = Date.now() + DSN_WAIT_MS;
    while (mx.messages === before && Date.now() < deadline) await sleep(5);
    if (mx.messages === before) {
      report.fail(
        `kill ${k}: no DSN reached the smarthost in ${DSN_WAIT_MS} ms with ${pending} owed ` +
          `(status ${JSON.stringify({ ...status.queue, failed: status.failed, dsns: status.dsnsPending })})`,
      );
    }
    await sleep(rng.int(0, 800));
    await relay.kill();
    running?.kill();
    await running?.done;
    report.add("dsns_before_kills", mx.messages - before);
    verify(`kill ${k}`);
    report.add("pending_at_kills", pending);
  }
  // Restart without a kill: the rest of the queue is collected and every owed DSN must go out.
  await relay.start();
  await pull().done;
  const deadline = Date.now() + DSN_WAIT_MS;
  for (;;) {
    const s = await relay.status();
    if ((s.failed.recipients === 0 && s.dsnsPending.total === 0) || Date.now() > deadline) break;
    await sleep(50);
  }
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM: exit ${stopped.code ?? stopped.signal}`);
  verify("after the last restart");
  report.check(pending === 0, `${pending} DSNs still pending after the last restart`);
  const missing = [...owed].filter((p) => !dsns.has(p)).length;
  report.check(missing === 0, `${missing} owed DSNs never reached the smarthost`);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  let duplicates = 0;
  for (const n of dsns.values()) duplicates += n - 1;
  report.set("kills", plan.kills);
  report.set("owed", owed.size);
  report.set("checked", checked);
  report.set("duplicates", duplicates);
}

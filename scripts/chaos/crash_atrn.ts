/**
 * Crash consistency of ATRN delivery (issue 11, suite 1): the relay is SIGKILLed while a customer
 * (`odmr-relay pull --tls none` into a recording sink) collects. Afterwards every recipient must be
 * either confirmed by the customer (the sink took the message) or still queued in the dead relay's
 * file: duplicates are allowed (the relay batches its outcome commits; DESIGN.md 6), losses are not.
 * Recipients of a domain that was not asked for must all stay queued. A last, unkilled pull must then
 * deliver everything that was left.
 */
import { join } from "node:path";
import type { SuiteContext } from "./lib/context.ts";
import { makeMessage } from "./lib/messages.ts";
import { startPull, writeSecret } from "./lib/pull.ts";
import { inspectChecked, recipientPairs } from "./lib/queue_db.ts";
import { newRelay, sleep } from "./lib/relay.ts";
import { Sink } from "./lib/sink.ts";
import { fillRecipients } from "./lib/traffic.ts";
import { CHAOS_ACCOUNT } from "./crash_intake.ts";

const PLAN = {
  ci: { kills: 2, batch: 1500, refillBelow: 400 },
  heavy: { kills: 10, batch: 2500, refillBelow: 800 },
};
/** Longest wait for the first delivery of a pull (it must have started collecting before the kill). */
const FIRST_DELIVERY_MS = 15_000;
/** Longest pull (the final one drains everything that is left). */
const PULL_LIMIT_MS = 120_000;
const [COLLECTED_A, COLLECTED_B, LEFT_ALONE] = CHAOS_ACCOUNT.domains as [string, string, string];

/** Runs the ATRN crash part; figures go to the suite report as `atrn.*`. */
export async function crashAtrn(ctx: SuiteContext): Promise<void> {
  const plan = ctx.heavy ? PLAN.heavy : PLAN.ci;
  const { rng } = ctx;
  const report = ctx.report.part("atrn");
  const { relay, dataDir } = newRelay(ctx, "atrn", [CHAOS_ACCOUNT], {
    atrnMaxPerMinute: 1000,
    smtpMaxConnectionsPerIp: 100,
  });
  const secretFile = writeSecret(ctx.path("atrn-secret"), CHAOS_ACCOUNT.secret);
  /** Times the customer's MTA accepted each (Message-ID, recipient). */
  const confirmed = new Map<string, number>();
  const sink = await new Sink({
    onMessage: (m) => {
      const id = /^Message-ID:\s*(<[^>]+>)/im.exec(m.data.subarray(0, 4096).toString("latin1"))?.[1];
      for (const r of m.rcpts) confirmed.set(`${id} ${r}`, (confirmed.get(`${id} ${r}`) ?? 0) + 1);
    },
  }).listen();
  ctx.scope.defer("close sink", () => sink.close());

  /** Recipients the customer must eventually get, and those it must never get. */
  const expected = new Set<string>();
  const leftAlone = new Set<string>();
  let made = 0;
  const refill = async () => {
    await fillRecipients(
      {
        port: relay.ports.smtp,
        rng,
        count: plan.batch,
        workers: 16,
        make: () => {
          const n = made++;
          const rcpts = [`a${n}@${COLLECTED_A}`];
          if (rng.chance(0.3)) rcpts.push(`b${n}@${COLLECTED_B}`);
          if (rng.chance(0.1)) rcpts.push(`c${n}@${LEFT_ALONE}`);
          return makeMessage(rng, `a${report.seed}`, n, { from: `s${n}@remote.chaos.test`, rcpts }, {
            largeShare: 0.005,
          });
        },
      },
      report,
      (r) => (r.endsWith(LEFT_ALONE) ? leftAlone : expected),
    );
  };

  let queuedLeft = 0;
  let checked = 0;
  /** The dead relay's file against what the customer confirmed. */
  const verify = (k: string) => {
    const inspection = inspectChecked(join(dataDir, "queue.db"), report.fail, k);
    const queued = new Set([...recipientPairs(inspection)].filter(([, s]) => s === "queued").map(([p]) => p));
    let losses = 0;
    for (const pair of expected) {
      checked++;
      if (!queued.has(pair) && !confirmed.has(pair) && losses++ < 5) report.fail(`${k}: LOST ${pair}`);
    }
    for (const pair of leftAlone) {
      checked++;
      if (!queued.has(pair)) {
        report.fail(`${k}: a recipient of a domain not asked for left the queue: ${pair}`);
      }
      if (confirmed.has(pair)) report.fail(`${k}: a domain not asked for was delivered: ${pair}`);
    }
    report.add("losses", losses);
    queuedLeft = [...expected].filter((p) => queued.has(p)).length;
  };

  /** The customer collects the two domains it asks for into the sink. */
  const collect = () =>
    startPull({
      binary: ctx.binary,
      odmrPort: relay.ports.odmr,
      sinkPort: sink.port,
      user: CHAOS_ACCOUNT.user,
      secretFile,
      domains: [COLLECTED_A, COLLECTED_B],
      limitMs: PULL_LIMIT_MS,
    });

  /** How `pull` exited when the relay died under it (it must not claim more than it delivered). */
  const pullExits = new Map<string, number>();
  report.add("losses", 0);
  await relay.start();
  await refill();
  for (let k = 1; k <= plan.kills; k++) {
    if (!relay.running) await relay.start();
    if (queuedLeft < plan.refillBelow && k > 1) await refill();
    const before = sink.messages;
    const pull = collect();
    const deadline = Date.now() + FIRST_DELIVERY_MS;
    while (sink.messages === before && Date.now() < deadline) await sleep(5);
    if (
      !report.check(
        sink.messages > before,
        `kill ${k}: the pull delivered nothing in ${FIRST_DELIVERY_MS} ms`,
      )
    ) {
      pull.kill();
    }
    let finished = false;
    void pull.done.then(() => (finished = true));
    await sleep(rng.int(0, 600));
    if (finished) report.note(`kill ${k}: the pull had finished before the kill`);
    await relay.kill();
    const ended = await pull.done;
    const code = String(ended.code ?? ended.signal);
    pullExits.set(code, (pullExits.get(code) ?? 0) + 1);
    report.add("delivered_before_kills", sink.messages - before);
    verify(`kill ${k}`);
  }
  // The last pull, not killed, must collect everything that is left.
  await relay.start();
  const last = await collect().done;
  report.check(
    last.code === 0,
    `final pull exited ${last.code ?? last.signal}: ${last.stderr.trim().slice(-300)}`,
  );
  const stopped = await relay.stop();
  report.check(stopped.code === 0, `SIGTERM: exit ${stopped.code ?? stopped.signal}`);
  verify("after the final pull");
  const undelivered = [...expected].filter((p) => !confirmed.has(p)).length;
  report.check(
    undelivered === 0,
    `${undelivered} recipients never reached the customer after the final pull`,
  );
  report.check(queuedLeft === 0, `${queuedLeft} recipients still queued after the final pull`);
  for (const c of relay.crashes) report.fail(c);
  for (const l of relay.bugLines()) report.fail(`relay log: ${l}`);
  let duplicates = 0;
  for (const n of confirmed.values()) duplicates += n - 1;
  report.set("pull_exits_at_kills", [...pullExits].map(([k, v]) => `${k}:${v}`).join(","));
  report.set("kills", plan.kills);
  report.set("recipients", expected.size);
  report.set("checked", checked);
  report.set("duplicates", duplicates);
  report.set("left_alone", leftAlone.size);
}

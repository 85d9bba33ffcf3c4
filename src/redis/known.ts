/**
 * Answers a process already knows (Redis engine, a sale that is not split): once Redis has answered that a sale is
 * sold out, or that every unit of an item is sold, this process answers the same for that sale or item itself,
 * for at most a second after the reply behind it, and never across a sale boundary. A restock, an operator's
 * change or a rebuild that lost purchases can undo "sold out", and operators' changes reach every instance within
 * a second: the same bound holds here. A change made through this instance, or a rebuild, forgets at once.
 *
 * What the process answers is kept as every decision is: the refusals of a batch go to Redis in one call
 * (lua/note.lua) that appends them to the journal and counts them, in one atomic step, before they are answered;
 * the ledger then writes them to PostgreSQL with the rest. So they are counted exactly once on every instance's
 * /status and in the audit, and a kill -9 loses none that was answered. The call does none of a checkout's
 * reads and writes per request, and it checks the sale's state: a sale no longer sold out, or now paused, is
 * asked of lua/checkout.lua instead.
 */
import type { EngineMetrics } from "../metrics"
import type { CheckoutResult } from "../sale/engine"
import { outcomes } from "../sale/outcomes"
import type { DecisionRecord } from "../sale/records"
import type { Sale } from "../sale/sales"
import { closesAt } from "../sale/sales"
import { batchersByKey } from "./batcher"
import { eventId, refusalLine } from "./journal"
import { saleKeys } from "./keys"
import type { LedgerWriter } from "./ledger"
import type { Scripts } from "./scripts"

/** How long a reply is trusted: the bound operators' changes have to reach every instance. */
export const trustMs = 1000

type Known = "sold_out" | "item_sold"
type Asked = { sale: Sale; userId: string; itemId: number }

export type KnownOptions = {
  scripts: Scripts
  ledger: LedgerWriter
  /** The time the scripts decide at ('' in production: Redis TIME) and the estimate of it. */
  nowArg: () => string
  estimatedNow: () => number
  /** The usual path: a request Redis decides. */
  ask: (userId: string, itemId: number) => Promise<CheckoutResult>
  metrics: Pick<EngineMetrics, "knownAnswers">
}

export function createKnown({ scripts, ledger, nowArg, estimatedNow, ask, metrics }: KnownOptions) {
  /** The one sale remembered: until when it is sold out, and until when each item is sold (performance.now()). */
  let memory: { saleId: number; soldOutUntil: number; items: Map<number, number> } | undefined
  /** Counts forget()s: a reply to a call sent before the latest one may predate the change that forgot, so it is not remembered. */
  let generation = 0

  function remember(saleId: number, itemId: number, outcome: string, sentIn: number): void {
    if (outcome !== "sold_out" && outcome !== "item_sold") return
    if (sentIn !== generation) return
    if (memory?.saleId !== saleId) memory = { saleId, soldOutUntil: 0, items: new Map() }
    const until = performance.now() + trustMs
    if (outcome === "sold_out") memory.soldOutUntil = until
    else memory.items.set(itemId, until)
  }

  /** What the process may answer for this request itself, if anything. */
  function known(open: Sale, itemId: number): Known | undefined {
    if (memory?.saleId !== open.id) return undefined
    // Not within a second of the sale's end by the estimated clock: the script's clock has the last word there. (Its
    // start is behind it: Redis said sold out or sold in this sale.)
    if (estimatedNow() >= closesAt(open) - trustMs) return undefined
    // An item the sale does not have is unknown_item, which comes first.
    if (open.items.position(itemId) < 0) return undefined
    const now = performance.now()
    if (memory.soldOutUntil > now) return "sold_out"
    const itemUntil = memory.items.get(itemId)
    return itemUntil !== undefined && itemUntil > now ? "item_sold" : undefined
  }

  /** One queue per sale and answer: a call keeps refusals of one kind, which the script checks against the state. */
  const queues = batchersByKey<Asked, CheckoutResult | Promise<CheckoutResult>>()

  async function keep(batch: Asked[], says: Known): Promise<(CheckoutResult | Promise<CheckoutResult>)[]> {
    const sale = batch[0]!.sale
    const status = outcomes[says].n
    const lines = batch.map((a) => refusalLine(a.itemId, a.userId, status)).join("\n")
    const part = String(sale.id)
    const reply = await scripts.note(saleKeys(part), nowArg(), sale.id, lines, batch.length, says)
    if (reply.kind !== "kept") {
      // Redis says otherwise now (or the sale must be rebuilt, or is not open): forget, and ask it as usual.
      forget()
      // Each on its own: one that fails must not take the others' answers (a granted hold among them) with it.
      return batch.map((a) => ask(a.userId, a.itemId))
    }
    const records: DecisionRecord[] = batch.map((a, i) => ({ kind: "checkout", saleId: sale.id, eventId: eventId(reply.entryId, i), userId: a.userId, itemId: a.itemId, outcome: says, code: null, unit: null, expiresAt: null, at: reply.now }))
    // In the journal now, as a refusal lua/checkout.lua decided would be: answered without waiting for the commit.
    void ledger.keep(part, reply.entryId, records)
    metrics.knownAnswers.add(batch.length)
    return batch.map(() => ({ ok: false, error: says }))
  }

  function forget(): void {
    memory = undefined
    generation++
  }

  return {
    /** What to hand remember() with the replies of a script call about to be sent. */
    mark: () => generation,
    /** Notes a reply of lua/checkout.lua for a request, of a call sent at mark() `sentIn`. */
    remember,
    /** The answer this process knows for the request, on its way to being kept; undefined: ask Redis. */
    answer(open: Sale, userId: string, itemId: number): Promise<CheckoutResult> | undefined {
      const says = known(open, itemId)
      // A promise that resolves with a promise settles as that one: flat for the caller.
      return says && (queues(`${open.id}:${says}`, (batch) => keep(batch, says))({ sale: open, userId, itemId }) as Promise<CheckoutResult>)
    },
    /** Forgets every answer: a change made through this instance, or a rebuild. */
    forget,
  }
}

/**
 * The journal: each sale's Redis stream, to which the script that decides appends the decision in the
 * same atomic step, so that nothing decided can be lost before PostgreSQL has it.
 *
 * One entry per decision (written by lua/checkout.lua and lua/purchase.lua), its fields:
 *   e  event kind: "c" checkout attempt, "p" purchase attempt
 *   u  user id ("" for a purchase of an unknown code)
 *   i  item id as requested ("" for a purchase of an unknown code)
 *   o  outcome name (sale/outcomes.ts)
 *   k  code: granted or repeated hold (checkout, "" when refused), or the code presented (purchase)
 *   x  hold expiry, Unix ms (checkout; "" when refused)
 *   t  decision time, Unix ms (Redis TIME)
 * The entry id (Redis's, "<ms>-<seq>") is the record's event_id in PostgreSQL.
 */
import type Redis from "ioredis"
import type { CheckoutOutcome, PurchaseOutcome } from "../sale/outcomes"
import type { DecisionRecord } from "../sale/records"
import { logKey, saleRegistryKey } from "./keys"

export type StreamEntry = [id: string, fields: string[] | null]

/** The record an entry holds, or undefined for an entry deleted before it was acknowledged (it has no fields). */
export function recordOf(saleId: number, [id, fields]: StreamEntry): DecisionRecord | undefined {
  const f: Record<string, string> = {}
  for (let i = 0; fields && i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!
  const optional = (value: string | undefined) => (value ? value : null)
  if (f.e === "c") {
    return { kind: "checkout", saleId, eventId: id, userId: f.u!, itemId: Number(f.i), outcome: f.o as CheckoutOutcome, code: optional(f.k), expiresAt: f.x ? Number(f.x) : null, at: Number(f.t) }
  }
  if (f.e === "p") {
    return { kind: "purchase", saleId, eventId: id, code: f.k!, outcome: f.o as PurchaseOutcome, userId: optional(f.u), itemId: f.i ? Number(f.i) : null, at: Number(f.t) }
  }
  return undefined
}

export type Backlog = { entries: number; oldestAgeMs: number }

/** Entries in every registered sale's journal (decisions not yet in PostgreSQL), and the age of the oldest. */
export async function journalBacklog(redis: Pick<Redis, "smembers" | "pipeline">): Promise<Backlog> {
  const sales = (await redis.smembers(saleRegistryKey)).map(Number)
  const pipeline = redis.pipeline()
  for (const saleId of sales) pipeline.xlen(logKey(saleId)).xrange(logKey(saleId), "-", "+", "COUNT", 1)
  const replies = (await pipeline.exec()) ?? []
  let entries = 0
  let oldest = Infinity
  for (let i = 0; i < replies.length; i += 2) {
    entries += Number(replies[i]![1] ?? 0)
    const first = replies[i + 1]![1] as StreamEntry[] | null
    if (first?.[0]) oldest = Math.min(oldest, Number(first[0][0].split("-")[0]))
  }
  return { entries, oldestAgeMs: entries > 0 && oldest !== Infinity ? Math.max(0, Date.now() - oldest) : 0 }
}

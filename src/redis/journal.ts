/**
 * The journal: each sale's Redis stream. The script that decides appends its whole batch as one entry
 * in the same atomic step as the decision, so nothing answered can be lost before PostgreSQL has it.
 * The instance that made the call writes the records to PostgreSQL from memory and then deletes the
 * entry (redis/ledger.ts); the journal is read only to recover what an instance never committed.
 *
 * An entry's fields:
 *   e  kind: "c" a batch of checkout attempts, "p" a batch of purchase attempts
 *   t  decision time, Unix ms (Redis TIME), shared by the batch
 *   d  the decisions, one per line, fields separated by one space (user ids and codes hold neither):
 *        checkout: item_id user_id status code expires_ms unit   (code, expiry and unit empty when refused)
 *        purchase: code status item_id user_id unit              (item, user and unit empty for an unknown code)
 *      status is the number of the outcome (sale/outcomes.ts). A line of a version before stock has no unit:
 *      every item had one unit then, so a hold or sale it records is unit 1.
 * Decision i of entry "<ms>-<seq>" is kept with event_id "<ms>-<seq * 1000 + i>": unique within the
 * sale (a batch is at most 256 decisions), ordered as decided, and the same however often it is written.
 * A sale split into shards has one journal per shard: there decision i of shard k's entry is kept as
 * "<ms>-<(seq * 1000 + i) * 64 + k>", unique across the shards and ordered within each.
 * Entries of an older server (one decision per entry: e, u, i, o, k, x, t) are read too.
 */
import type { RedisClient } from "./connect"
import { checkoutOutcome, purchaseOutcome, type CheckoutOutcome, type PurchaseOutcome } from "../sale/outcomes"
import type { DecisionRecord } from "../sale/records"
import { logKey, maxShards, saleOfPart, saleRegistryKey, shardOfPart } from "./keys"

export type StreamEntry = [id: string, fields: string[] | null]

/** The event id of decision `index` of journal entry `entryId`, written by shard `shard` if the sale is split. */
export function eventId(entryId: string, index: number, shard?: number): string {
  const dash = entryId.indexOf("-")
  const seq = Number(entryId.slice(dash + 1)) * 1000 + index
  return `${entryId.slice(0, dash)}-${shard === undefined ? seq : seq * maxShards + shard}`
}

/** A checkout refusal's line, as lua/checkout.lua writes one (code, expiry and unit empty), for refusals the server answered itself (redis/known.ts). */
export const refusalLine = (itemId: number, userId: string, status: number) => `${itemId} ${userId} ${status}   `

const optional = (value: string | undefined) => (value ? value : null)

/** The records an entry of a part's journal holds (none for an entry deleted while a reader held its id: it has no fields). */
export function recordsOf(part: string | number, [id, fields]: StreamEntry): DecisionRecord[] {
  const saleId = saleOfPart(String(part))
  const shard = shardOfPart(String(part))
  const f: Record<string, string> = {}
  for (let i = 0; fields && i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!
  if (f.d === undefined) return legacyRecord(saleId, id, f)
  const at = Number(f.t)
  return f.d.split("\n").map((line, i): DecisionRecord => {
    const p = line.split(" ")
    if (f.e === "c") {
      const code = optional(p[3])
      return { kind: "checkout", saleId, eventId: eventId(id, i, shard), itemId: Number(p[0]), userId: p[1]!, outcome: checkoutOutcome(Number(p[2])), code, unit: p[5] ? Number(p[5]) : code ? 1 : null, expiresAt: p[4] ? Number(p[4]) : null, at }
    }
    const itemId = p[2] ? Number(p[2]) : null
    return { kind: "purchase", saleId, eventId: eventId(id, i, shard), code: p[0]!, outcome: purchaseOutcome(Number(p[1])), itemId, userId: optional(p[3]), unit: p[4] ? Number(p[4]) : itemId === null ? null : 1, at }
  })
}

function legacyRecord(saleId: number, id: string, f: Record<string, string>): DecisionRecord[] {
  if (f.e === "c") return [{ kind: "checkout", saleId, eventId: id, userId: f.u!, itemId: Number(f.i), outcome: f.o as CheckoutOutcome, code: optional(f.k), unit: f.k ? 1 : null, expiresAt: f.x ? Number(f.x) : null, at: Number(f.t) }]
  if (f.e === "p") return [{ kind: "purchase", saleId, eventId: id, code: f.k!, outcome: f.o as PurchaseOutcome, userId: optional(f.u), itemId: f.i ? Number(f.i) : null, unit: f.i ? 1 : null, at: Number(f.t) }]
  return []
}

export type Backlog = { entries: number; oldestAgeMs: number }

/** Entries in every registered journal (script calls not yet in PostgreSQL), and the age of the oldest. */
export async function journalBacklog(redis: Pick<RedisClient, "smembers" | "xlen" | "xrange">): Promise<Backlog> {
  const parts = await redis.smembers(saleRegistryKey)
  // One command per journal, not one pipeline: on a cluster the journals live on different nodes.
  const replies = await Promise.all(parts.map(async (part) => [await redis.xlen(logKey(part)), await redis.xrange(logKey(part), "-", "+", "COUNT", 1)] as const))
  let entries = 0
  let oldest = Infinity
  for (const [length, first] of replies) {
    entries += length
    if (first[0]) oldest = Math.min(oldest, Number(first[0][0].split("-")[0]))
  }
  return { entries, oldestAgeMs: entries > 0 && oldest !== Infinity ? Math.max(0, Date.now() - oldest) : 0 }
}

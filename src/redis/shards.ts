/**
 * One sale split over several hash tags (SALE_SHARDS=N > 1), so that on a Redis Cluster its decisions
 * land on several masters. Shard k of sale S is the tag {sale:S:k}, with the same six keys as a whole
 * sale (lua/prelude.lua). It holds the items i with (i - 1) mod N = k, with their codes, holds, journal
 * and counters, and it counts the users whose id hashes to k (userShard). A checkout or purchase is
 * recorded in the journal of its item's shard, once.
 *
 * A checkout:
 *   1. item's shard (lua/shard_hold.lua): everything that does not depend on the user's other holds in the
 *      sale is decided and journaled here, in one call: unknown_item, repeated, sold_out, sale_paused,
 *      item_sold, item_reserved, and user_limit by the item's per_user. The flood of refusals of a busy sale
 *      ends here. The item's lowest free unit is held tentatively.
 *   2. user's shard (lua/shard_slot.lua): the user's slot under the sale's limit is taken, or refused.
 *   3. item's shard (lua/shard_settle.lua): the tentative hold becomes a hold (reserved) or goes back
 *      to stock (user_limit), journaled.
 * A success costs three script calls, or more when a user at the limit has holds past their expiry:
 * the user's shard cannot see expiries or purchases on item shards, so before such a user is refused
 * their item shards are asked (lua/shard_verify.lua) and the answers recorded (lua/shard_unslot.lua).
 * A refusal is never given on a stale count, and a slot is never freed while its hold can still be
 * bought.
 *
 * A purchase is one call on the shard its code names (sale/codes.ts), as for a whole sale.
 *
 * sold_out needs every shard: an item shard that is sold out answers shard_full until the server
 * has asked the others; every instance remembers which shards of a sale are sold out (a sale never
 * gets stock back), so once all are, a refusal is one call again.
 *
 * What a crash between steps leaves, and how it heals:
 *   after 1: a tentative hold no one answers; it expires with the hold time and the item is back in stock.
 *   after 2: the same, plus a slot taken for it: the user's count is one too high until that hold's
 *            expiry; the first time the count refuses the user after that, the item shard says the
 *            hold ended unbought and the slot is freed.
 *   a user shard lost (Redis lost its keys): it is rebuilt from the item shards' state in Redis, the
 *            tentative holds included, so a slot taken on the lost shard is still counted; an item
 *            shard lost is rebuilt from PostgreSQL, like a whole sale.
 * At no point can an item have two holders or a code sell twice: both are decided on the item's shard alone.
 */
import type { EngineMetrics } from "../metrics"
import { newCode } from "../sale/codes"
import { UnavailableError, type CheckoutResult } from "../sale/engine"
import { checkoutOutcome } from "../sale/outcomes"
import type { CheckoutRecord } from "../sale/records"
import { publicItem, type Sale } from "../sale/sales"
import type { RedisClient } from "./connect"
import { batchersByKey } from "./batcher"
import { eventId } from "./journal"
import { codeShard, itemShard, saleKeys, shardPart, statsKey, userShard } from "./keys"
import type { LedgerWriter } from "./ledger"
import type { Lifecycle } from "./lifecycle"
import { specOf, step, unavailable, type Batch, type HoldFate, type HoldStep, type Scripts, type SlotRequest, type Undecided } from "./scripts"

/** Script calls a request may make before it is answered "try again": the steps, a rebuild, a retry. */
const maxRounds = 4
/** How long an instance trusts what it learned about which shards are sold out. */
const soldOutTrustMs = 1000

/**
 * A checkout on its way through the steps. `others`: what this instance learned of the other shards when the
 * item's shard was sold out; `wait`: false once it waited for the user's own tentative hold of the item; `at`,
 * when set, is the node's time a step said the sale it tried was not open at, and then only a sale open at that
 * time is tried, never one about to open.
 */
/** `closed`: a sale a step found not open at the node's time `at` (an instance's copy of the sales may lag behind an end). */
type Wanted = { userId: string; itemId: number; others?: "sold-out" | "selling"; wait: boolean; round: number; at?: number; closed?: number }

export type ShardedCheckoutOptions = {
  redis: RedisClient
  scripts: Scripts
  sale: Lifecycle
  ledger: LedgerWriter
  metrics: EngineMetrics
  shards: number
  /** The sale to decide a checkout in at `at` (the open one, or with `soon`, one about to open), as the engine picks it. */
  candidate: (at: number, soon: boolean) => Sale | undefined
  /** The answer when no sale is open at `at`. */
  noSale: (at: number) => CheckoutResult
}

export function createShardedCheckout(options: ShardedCheckoutOptions): (userId: string, itemId: number) => Promise<CheckoutResult> {
  const { redis, scripts, sale: lifecycle, ledger, metrics, shards, candidate, noSale } = options
  /**
   * Per sale, the shards known to be sold out, trusted for a second: a sale gets stock back only when an
   * operator restocks it, a hold is released, or a rebuild lost uncommitted purchases. Only two sales are kept.
   */
  const soldOut = new Map<number, { shards: Set<number>; since: number }>()
  /** Tentative holds this instance is settling, by code, so that the same user's second click waits for the first. */
  const settling = new Map<string, Promise<unknown>>()
  /** One step-1 queue per sale and shard: an item's shard depends on its place among its sale's items. */
  const holdQueues = batchersByKey<Wanted, CheckoutResult | Promise<CheckoutResult>>()
  const slotQueues = batchersByKey<SlotRequest, { status: number; asked: string[] }>()

  function submit(w: Wanted): Promise<CheckoutResult> {
    if (w.round >= maxRounds) return Promise.reject(new UnavailableError("the sale is changing; try again"))
    const at = w.at ?? lifecycle.estimatedNow()
    const open = candidate(at, w.at === undefined)
    if (!open || open.id === w.closed) return Promise.resolve(noSale(at))
    const k = itemShard(open.items.position(w.itemId), shards)
    const key = `${open.id}:${k}`
    return holdQueues(key, (batch) => hold(open, k, batch))(w) as Promise<CheckoutResult>
  }

  /** The shards of a sale this instance knows to be sold out. "Some other shard is not" is never remembered: it can stop being true at any moment. */
  function soldOutKnown(saleId: number): { shards: Set<number> } {
    let known = soldOut.get(saleId)
    if (!known || Date.now() - known.since > soldOutTrustMs) {
      known = { shards: new Set(), since: Date.now() }
      soldOut.set(saleId, known)
      for (const old of soldOut.keys()) if (soldOut.size > 2 && old !== saleId) soldOut.delete(old)
    }
    return known
  }

  /** What this instance knows, for shard_hold.lua, of the shards other than `shard`: "sold-out" if every one is, else "unknown". */
  const othersOf = (saleId: number, shard: number): "sold-out" | "unknown" => {
    const known = soldOutKnown(saleId).shards
    return known.size >= shards - 1 && [...Array(shards).keys()].every((k) => k === shard || known.has(k)) ? "sold-out" : "unknown"
  }

  /** A script call on a part of `open`, rebuilding it if Redis lost it; closed: the sale is not open at the node's time. */
  async function inSale<T>(open: Sale, call: () => Promise<T | Undecided>): Promise<T | { kind: "closed"; now: number }> {
    for (let attempt = 0; attempt < maxRounds; attempt++) {
      const reply = await call()
      const kind = (reply as { kind?: string }).kind
      if (kind === "notReady") await lifecycle.rebuild(open)
      else return reply as T | { kind: "closed"; now: number }
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  /** Step 1 for a batch of checkouts of items on shard k of `open`. */
  async function hold(open: Sale, k: number, batch: Wanted[]): Promise<(CheckoutResult | Promise<CheckoutResult>)[]> {
    metrics.batchSize.observe(batch.length, "checkout")
    const part = shardPart(open.id, k, shards)
    const known = othersOf(open.id, k)
    const requests = batch.map((w) => ({ itemId: w.itemId, spec: specOf(open.items, w.itemId, shards), userId: w.userId, code: newCode(open.id, k), others: w.others ?? known, wait: w.wait }))
    const reply = await inSale<Batch<HoldStep>>(open, () => scripts.shardHold(saleKeys(part), lifecycle.nowArg(), open.id, requests))
    if (reply.kind === "closed") {
      // Not open at the node's time: each request goes to the sale that is, if one is (its item may be on another shard there).
      lifecycle.syncClock().catch(() => {})
      return batch.map((w) => submit({ ...w, at: reply.now, closed: open.id, round: w.round + 1 }))
    }
    const at = reply.now
    const records: CheckoutRecord[] = []
    const results: (CheckoutResult | Promise<CheckoutResult>)[] = []
    const tentative: { index: number; w: Wanted; code: string; expiresAt: number; unit: number }[] = []
    const waiting: { index: number; w: Wanted; status: number; code: string }[] = []
    batch.forEach((w, i) => {
      const { status, code, expiresAt, unit } = reply.results[i]!
      if (status === step.tentative) return tentative.push({ index: i, w, code, expiresAt, unit })
      if (status === step.shardFull || status === step.inFlight) return waiting.push({ index: i, w, status, code })
      const outcome = checkoutOutcome(status)
      records.push({ kind: "checkout", saleId: open.id, eventId: eventId(reply.entryId, records.length, k), userId: w.userId, itemId: w.itemId, outcome, code: code || null, unit: unit || null, expiresAt: expiresAt || null, at })
      results[i] = outcome === "repeated" ? { ok: true, repeated: true, code, saleId: open.id, item: publicItem(open.items.at(open.items.position(w.itemId))), unit, expiresAt } : { ok: false, error: outcome as Exclude<typeof outcome, "reserved" | "repeated"> }
    })
    // Refusals and repeats changed nothing: answered at once, and kept anyway.
    if (records.length > 0) ledger.keep(part, reply.entryId, records)
    if (tentative.length > 0) {
      const settled = settle(open, k, at, tentative)
      for (const [j, t] of tentative.entries()) {
        const result = settled.then((all) => all[j]!)
        settling.set(t.code, result)
        result.catch(() => {}).finally(() => settling.delete(t.code))
        results[t.index] = result
      }
    }
    for (const { index, w, status, code } of waiting) results[index] = status === step.shardFull ? askSoldOut(open, k, w) : afterSettled(code, w)
    return results
  }

  /** Step 1 found shard k sold out: whether the sale is sold out depends on the other shards. */
  async function askSoldOut(open: Sale, k: number, w: Wanted): Promise<CheckoutResult> {
    const known = soldOutKnown(open.id)
    known.shards.add(k)
    const unknown = [...Array(shards).keys()].filter((j) => !known.shards.has(j))
    const counts = await Promise.all(unknown.map((j) => redis.hmget(statsKey(shardPart(open.id, j, shards)), "sold", "units").catch(unavailable)))
    unknown.forEach((j, i) => {
      const [sold, units] = counts[i]!
      if (sold !== null && units !== null && Number(sold) >= Number(units)) known.shards.add(j)
    })
    // A shard whose state is lost is taken as not sold out: then the item is answered item_sold, which it is.
    return submit({ ...w, others: known.shards.size === shards ? "sold-out" : "selling", round: w.round + 1 })
  }

  /** Step 1 found the item tentatively held by this same user: answer as if this request came after that one. */
  async function afterSettled(code: string, w: Wanted): Promise<CheckoutResult> {
    const first = settling.get(code)
    // Another instance is settling it: wait a moment once, then answer item_reserved rather than wait on.
    if (first) await first.catch(() => {})
    else await Bun.sleep(10)
    return submit({ ...w, wait: Boolean(first), round: w.round + 1 })
  }

  /** Steps 2 and 3 for the tentative holds of one step-1 call: take each user's slot, then settle them together. */
  /** One answer per tentative hold, each settled on its own; the outer promise fails only if the settle call does. */
  async function settle(open: Sale, k: number, at: number, tentative: { w: Wanted; code: string; expiresAt: number; unit: number }[]): Promise<Promise<CheckoutResult>[]> {
    // Each slot on its own: one user's shard failing must not leave the others' holds unsettled.
    const slots = await Promise.allSettled(tentative.map((t) => takeSlot(open, t.w.userId, t.code, t.expiresAt, at)))
    const verdicts = slots.map((s) => (s.status === "fulfilled" ? s.value : step.abandoned))
    const part = shardPart(open.id, k, shards)
    const reply = await scripts.shardSettle(saleKeys(part), at, open.id, tentative.map((t, i) => ({ itemId: t.w.itemId, userId: t.w.userId, code: t.code, verdict: verdicts[i]! })))
    const lostAll = "kind" in reply
    const entryId = lostAll ? "" : reply.entryId
    const records: CheckoutRecord[] = []
    const statuses = tentative.map((_, i) => (lostAll ? step.lost : reply.statuses[i]!))
    statuses.forEach((status, i) => {
      const t = tentative[i]!
      if (status === step.lost || status === step.abandoned) return
      const outcome = checkoutOutcome(status)
      const granted = outcome === "reserved"
      records.push({ kind: "checkout", saleId: open.id, eventId: eventId(entryId, records.length, k), userId: t.w.userId, itemId: t.w.itemId, outcome, code: granted ? t.code : null, unit: granted ? t.unit : null, expiresAt: granted ? t.expiresAt : null, at })
    })
    const kept = records.length > 0 ? ledger.keep(part, entryId, records) : Promise.resolve(undefined)
    return tentative.map(async (t, i): Promise<CheckoutResult> => {
      const status = statuses[i]!
      const slot = slots[i]!
      if (slot.status === "rejected") {
        // Whether the slot was taken is unknown: free it if it was (unslot ignores a hold it does not list).
        await unslot(open, [[t.w.userId, t.code, "ended"]]).catch(() => {})
        throw slot.reason
      }
      if (status === step.lost) {
        // The hold was lost with a rebuilt shard: free its slot and decide the request again.
        await unslot(open, [[t.w.userId, t.code, "ended"]])
        return submit({ ...t.w, round: t.w.round + 1 })
      }
      if (status !== 0) return { ok: false, error: "user_limit" }
      await kept
      return { ok: true, repeated: false, code: t.code, saleId: open.id, item: publicItem(open.items.at(open.items.position(t.w.itemId))), unit: t.unit, expiresAt: t.expiresAt }
    })
  }

  /** Step 2: the user's slot for one tentative hold; 0 taken, -5 user_limit. */
  async function takeSlot(open: Sale, userId: string, code: string, expiresAt: number, at: number): Promise<number> {
    const part = shardPart(open.id, userShard(userId, shards), shards)
    let alreadyAsked = false
    for (let round = 0; round < maxRounds; round++) {
      const { status, asked } = await slotQueue(open.id, part)({ userId, code, expiresAt, at, asked: alreadyAsked })
      if (status === -11) {
        await lifecycle.rebuild(open)
        // The rebuilt shard lists holds afresh: ask about them again if it comes to that.
        alreadyAsked = false
      } else if (status === step.ask) {
        await askHolds(open, userId, asked)
        alreadyAsked = true
      } else return status
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  function slotQueue(saleId: number, part: string): (slot: SlotRequest) => Promise<{ status: number; asked: string[] }> {
    return slotQueues(part, async (slots) => {
      const reply = await scripts.shardSlot(saleKeys(part), saleId, slots)
      return "kind" in reply ? slots.map(() => ({ status: -11, asked: [] })) : reply
    })
  }

  /** A user at the limit has holds past their expiry: ask their item shards what became of them, and record it. */
  async function askHolds(open: Sale, userId: string, codes: string[]): Promise<void> {
    const byShard = new Map<number, string[]>()
    const verdicts: [string, string, Exclude<HoldFate, "live">][] = []
    for (const code of codes) {
      const shard = codeShard(code, shards)
      // A code naming no shard of this split (issued before SALE_SHARDS changed) can never be bought: purchase() refuses it.
      if (shard === undefined) verdicts.push([userId, code, "ended"])
      else byShard.set(shard, [...(byShard.get(shard) ?? []), code])
    }
    await Promise.all(
      [...byShard].map(async ([shard, asked]) => {
        const keys = saleKeys(shardPart(open.id, shard, shards))
        let reply = await scripts.shardVerify(keys, lifecycle.nowArg(), open.id, asked)
        if ("kind" in reply) {
          await lifecycle.rebuild(open)
          reply = await scripts.shardVerify(keys, lifecycle.nowArg(), open.id, asked)
        }
        if ("kind" in reply) return
        asked.forEach((code, i) => {
          const verdict = reply[i]
          if (verdict === "bought" || verdict === "ended") verdicts.push([userId, code, verdict])
        })
      }),
    )
    await unslot(open, verdicts)
  }

  async function unslot(open: Sale, holds: [user: string, code: string, fate: Exclude<HoldFate, "live">][]): Promise<void> {
    if (holds.length === 0) return
    const byPart = new Map<string, [string, string, Exclude<HoldFate, "live">][]>()
    for (const hold of holds) {
      const part = shardPart(open.id, userShard(hold[0], shards), shards)
      byPart.set(part, [...(byPart.get(part) ?? []), hold])
    }
    await Promise.all([...byPart].map(([part, list]) => scripts.shardUnslot(saleKeys(part), open.id, list)))
  }

  return (userId, itemId) => submit({ userId, itemId, wait: true, round: 0 })
}

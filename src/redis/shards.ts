/**
 * One sale split over several hash tags (SALE_SHARDS=N > 1), so that on a Redis Cluster its decisions
 * land on several masters. Shard k of sale S is the tag {sale:S:k}, with the same six keys as a whole
 * sale (lua/prelude.lua). It holds the items i with (i - 1) mod N = k, with their codes, holds, journal
 * and counters, and it counts the users whose id hashes to k (userShard). A checkout or purchase is
 * recorded in the journal of its item's shard, once.
 *
 * A checkout:
 *   1. item's shard (lua/shard_hold.lua): everything that does not depend on the user's other holds is
 *      decided and journaled here, in one call: unknown_item, sold_out, item_sold, item_reserved,
 *      repeated. The flood of refusals of a busy sale ends here. A free item is held tentatively.
 *   2. user's shard (lua/shard_slot.lua): the user's slot under USER_LIMIT is taken, or refused.
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
import type { Config } from "../config"
import type { EngineMetrics } from "../metrics"
import { newCode } from "../sale/codes"
import { UnavailableError, type CheckoutResult } from "../sale/engine"
import { checkoutOutcome, control } from "../sale/outcomes"
import type { CheckoutRecord } from "../sale/records"
import type { RedisClient } from "./connect"
import { batcher } from "./batcher"
import { eventId } from "./journal"
import { codeShard, itemShard, saleKeys, shardItems, shardPart, statsKey, userShard } from "./keys"
import type { LedgerWriter } from "./ledger"
import type { Lifecycle } from "./lifecycle"
import { unavailable, type Scripts } from "./scripts"

/** The replies of the shard scripts that decide nothing yet (see each script's header). */
const step = { tentative: 2, shardFull: -12, inFlight: -13, ask: -14, lost: -15, abandoned: -16 } as const

/** Script calls a request may make before it is answered "try again": the steps, a rebuild, a retry. */
const maxRounds = 4
/** How long an instance trusts what it learned about which shards are sold out. */
const soldOutTrustMs = 1000

type Wanted = { userId: string; itemId: number; flags: string; round: number }
type Slot = { userId: string; code: string; expiresAt: number; at: number; flags: string }

export type ShardedCheckoutOptions = {
  redis: RedisClient
  scripts: Scripts
  sale: Lifecycle
  ledger: LedgerWriter
  metrics: EngineMetrics
  config: Pick<Config, "saleItems" | "userLimit">
  shards: number
  periodMs: number
  holdMs: number
  /** Runs a script on a part of the current sale, following the current sale and rebuilding lost state (redis/engine.ts). */
  decide: (script: "shardHold", part: (saleId: number) => string, args: (saleId: number) => (string | number)[]) => Promise<[number, (string | number)[]]>
}

export function createShardedCheckout(options: ShardedCheckoutOptions): (userId: string, itemId: number) => Promise<CheckoutResult> {
  const { redis, scripts, sale, ledger, metrics, config, shards, periodMs, holdMs, decide } = options
  /**
   * Per sale, the shards known to be sold out, trusted for a second: a sale gets stock back only when a
   * rebuild lost uncommitted purchases. Only the current and the previous sale are kept.
   */
  const soldOut = new Map<number, { shards: Set<number>; since: number }>()
  /** Tentative holds this instance is settling, by code, so that the same user's second click waits for the first. */
  const settling = new Map<string, Promise<unknown>>()

  const holdQueues = Array.from({ length: shards }, (_, k) => batcher<Wanted, CheckoutResult | Promise<CheckoutResult>>((batch) => hold(k, batch)))
  const slotQueues = new Map<string, (slot: Slot) => Promise<[number, string]>>()

  function submit(w: Wanted): Promise<CheckoutResult> {
    if (w.round >= maxRounds) return Promise.reject(new UnavailableError("the sale is changing; try again"))
    return holdQueues[itemShard(w.itemId, shards, config.saleItems)]!(w) as Promise<CheckoutResult>
  }

  /** The shards of a sale this instance knows to be sold out. "Some other shard is not" is never remembered: it can stop being true at any moment. */
  function soldOutKnown(saleId: number): { shards: Set<number> } {
    let known = soldOut.get(saleId)
    if (!known || Date.now() - known.since > soldOutTrustMs) {
      known = { shards: new Set(), since: Date.now() }
      soldOut.set(saleId, known)
      for (const old of soldOut.keys()) if (old < saleId - 1) soldOut.delete(old)
    }
    return known
  }

  /** The flag shard_hold.lua takes for a sold-out shard: 'f' every other shard is sold out too, '' unknown. */
  const soldOutFlag = (saleId: number, shard: number) => {
    const known = soldOutKnown(saleId).shards
    return known.size >= shards - 1 && [...Array(shards).keys()].every((k) => k === shard || known.has(k)) ? "f" : ""
  }

  /** Step 1 for a batch of checkouts of items on shard k. */
  async function hold(k: number, batch: Wanted[]): Promise<(CheckoutResult | Promise<CheckoutResult>)[]> {
    metrics.batchSize.observe(batch.length, "checkout")
    const [saleId, reply] = await decide("shardHold", (saleId) => shardPart(saleId, k, shards), (saleId) => {
      const args: (string | number)[] = [sale.nowArg(), saleId, periodMs, config.saleItems, holdMs, shards, k]
      const known = soldOutFlag(saleId, k)
      for (const w of batch) args.push(w.itemId, w.userId, newCode(saleId, k), /[fn]/.test(w.flags) ? w.flags : w.flags + known)
      return args
    })
    const part = shardPart(saleId, k, shards)
    const at = Number(reply[1])
    const entryId = String(reply[2])
    const records: CheckoutRecord[] = []
    const results: (CheckoutResult | Promise<CheckoutResult>)[] = []
    const tentative: { index: number; w: Wanted; code: string; expiresAt: number }[] = []
    const waiting: { index: number; w: Wanted; status: number; code: string }[] = []
    batch.forEach((w, i) => {
      const status = Number(reply[3 + 3 * i])
      const code = String(reply[4 + 3 * i])
      const expiresAt = Number(reply[5 + 3 * i])
      if (status === step.tentative) return tentative.push({ index: i, w, code, expiresAt })
      if (status === step.shardFull || status === step.inFlight) return waiting.push({ index: i, w, status, code })
      const outcome = checkoutOutcome(status)
      records.push({ kind: "checkout", saleId, eventId: eventId(entryId, records.length, k), userId: w.userId, itemId: w.itemId, outcome, code: code || null, expiresAt: expiresAt || null, at })
      results[i] = outcome === "repeated" ? { ok: true, repeated: true, code, saleId, itemId: w.itemId, expiresAt } : { ok: false, error: outcome as Exclude<typeof outcome, "reserved" | "repeated"> }
    })
    // Refusals and repeats changed nothing: answered at once, and kept anyway.
    if (records.length > 0) ledger.keep(part, entryId, records)
    if (tentative.length > 0) {
      const settled = settle(saleId, k, at, tentative)
      for (const [j, t] of tentative.entries()) {
        const result = settled.then((all) => all[j]!)
        settling.set(t.code, result)
        result.catch(() => {}).finally(() => settling.delete(t.code))
        results[t.index] = result
      }
    }
    for (const { index, w, status, code } of waiting) results[index] = status === step.shardFull ? askSoldOut(saleId, k, w) : afterSettled(code, w)
    return results
  }

  /** Step 1 found shard k sold out: whether the sale is sold out depends on the other shards. */
  async function askSoldOut(saleId: number, k: number, w: Wanted): Promise<CheckoutResult> {
    const known = soldOutKnown(saleId)
    known.shards.add(k)
    const unknown = [...Array(shards).keys()].filter((j) => !known.shards.has(j))
    const sold = await Promise.all(unknown.map((j) => redis.hget(statsKey(shardPart(saleId, j, shards)), "sold").catch(unavailable)))
    unknown.forEach((j, i) => {
      if (sold[i] !== null && Number(sold[i]) >= shardItems(j, shards, config.saleItems)) known.shards.add(j)
    })
    // A shard whose state is lost is taken as not sold out: then the item is answered item_sold, which it is.
    const flag = known.shards.size === shards ? "f" : "n"
    return submit({ ...w, flags: w.flags.replace(/[fn]/g, "") + flag, round: w.round + 1 })
  }

  /** Step 1 found the item tentatively held by this same user: answer as if this request came after that one. */
  async function afterSettled(code: string, w: Wanted): Promise<CheckoutResult> {
    const first = settling.get(code)
    // Another instance is settling it: wait a moment once, then answer item_reserved rather than wait on.
    if (first) await first.catch(() => {})
    else await Bun.sleep(10)
    return submit({ ...w, flags: first ? w.flags : `${w.flags}w`, round: w.round + 1 })
  }

  /** Steps 2 and 3 for the tentative holds of one step-1 call: take each user's slot, then settle them together. */
  /** One answer per tentative hold, each settled on its own; the outer promise fails only if the settle call does. */
  async function settle(saleId: number, k: number, at: number, tentative: { w: Wanted; code: string; expiresAt: number }[]): Promise<Promise<CheckoutResult>[]> {
    // Each slot on its own: one user's shard failing must not leave the others' holds unsettled.
    const slots = await Promise.allSettled(tentative.map((t) => takeSlot(saleId, t.w.userId, t.code, t.expiresAt, at)))
    const verdicts = slots.map((s) => (s.status === "fulfilled" ? s.value : step.abandoned))
    const part = shardPart(saleId, k, shards)
    const args: (string | number)[] = [at, saleId, periodMs]
    tentative.forEach((t, i) => args.push(t.w.itemId, t.w.userId, t.code, verdicts[i]!))
    const reply = await scripts.shardSettle(saleKeys(part), args).catch(unavailable)
    const lostAll = Number(reply[0]) === control.notReady
    const entryId = String(reply[1] ?? "")
    const records: CheckoutRecord[] = []
    const statuses = tentative.map((_, i) => (lostAll ? step.lost : Number(reply[2 + i])))
    statuses.forEach((status, i) => {
      const t = tentative[i]!
      if (status === step.lost || status === step.abandoned) return
      const outcome = checkoutOutcome(status)
      const granted = outcome === "reserved"
      records.push({ kind: "checkout", saleId, eventId: eventId(entryId, records.length, k), userId: t.w.userId, itemId: t.w.itemId, outcome, code: granted ? t.code : null, expiresAt: granted ? t.expiresAt : null, at })
    })
    const kept = records.length > 0 ? ledger.keep(part, entryId, records) : Promise.resolve(undefined)
    return tentative.map(async (t, i): Promise<CheckoutResult> => {
      const status = statuses[i]!
      const slot = slots[i]!
      if (slot.status === "rejected") {
        // Whether the slot was taken is unknown: free it if it was (unslot ignores a hold it does not list).
        await unslot(saleId, [[t.w.userId, t.code, "r"]]).catch(() => {})
        throw slot.reason
      }
      if (status === step.lost) {
        // The hold was lost with a rebuilt shard: free its slot and decide the request again.
        await unslot(saleId, [[t.w.userId, t.code, "r"]])
        return submit({ ...t.w, round: t.w.round + 1 })
      }
      if (status !== 0) return { ok: false, error: "user_limit" }
      await kept
      return { ok: true, repeated: false, code: t.code, saleId, itemId: t.w.itemId, expiresAt: t.expiresAt }
    })
  }

  /** Step 2: the user's slot for one tentative hold; 0 taken, -5 user_limit. */
  async function takeSlot(saleId: number, userId: string, code: string, expiresAt: number, at: number): Promise<number> {
    const part = shardPart(saleId, userShard(userId, shards), shards)
    let flags = ""
    for (let round = 0; round < maxRounds; round++) {
      const [status, asked] = await slotQueue(saleId, part)({ userId, code, expiresAt, at, flags })
      if (status === control.notReady) {
        await sale.rebuild(saleId)
        // The rebuilt shard lists holds afresh: ask about them again if it comes to that.
        flags = ""
      } else if (status === step.ask) {
        await askHolds(saleId, userId, asked.split(","))
        flags = "x"
      } else return status
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  function slotQueue(saleId: number, part: string): (slot: Slot) => Promise<[number, string]> {
    let queue = slotQueues.get(part)
    if (!queue) {
      queue = batcher<Slot, [number, string]>(
        async (slots) => {
          const args: (string | number)[] = ["", saleId, periodMs, config.userLimit]
          for (const s of slots) args.push(s.userId, s.code, s.expiresAt, s.at, s.flags)
          const reply = await scripts.shardSlot(saleKeys(part), args).catch(unavailable)
          if (Number(reply[0]) === control.notReady) return slots.map(() => [control.notReady, ""])
          return slots.map((_, i) => [Number(reply[1 + 2 * i]), String(reply[2 + 2 * i])])
        },
        () => slotQueues.delete(part),
      )
      slotQueues.set(part, queue)
    }
    return queue
  }

  /** A user at the limit has holds past their expiry: ask their item shards what became of them, and record it. */
  async function askHolds(saleId: number, userId: string, codes: string[]): Promise<void> {
    const byShard = new Map<number, string[]>()
    const verdicts: [string, string, "p" | "r"][] = []
    for (const code of codes) {
      const shard = codeShard(code, shards)
      // A code naming no shard of this split (issued before SALE_SHARDS changed) can never be bought: purchase() refuses it.
      if (shard === undefined) verdicts.push([userId, code, "r"])
      else byShard.set(shard, [...(byShard.get(shard) ?? []), code])
    }
    await Promise.all(
      [...byShard].map(async ([shard, asked]) => {
        const keys = saleKeys(shardPart(saleId, shard, shards))
        let reply = await scripts.shardVerify(keys, [sale.nowArg(), saleId, periodMs, ...asked]).catch(unavailable)
        if (Number(reply[0]) === control.notReady) {
          await sale.rebuild(saleId)
          reply = await scripts.shardVerify(keys, [sale.nowArg(), saleId, periodMs, ...asked]).catch(unavailable)
        }
        asked.forEach((code, i) => {
          const verdict = String(reply[1 + i])
          if (verdict === "p" || verdict === "r") verdicts.push([userId, code, verdict])
        })
      }),
    )
    await unslot(saleId, verdicts)
  }

  async function unslot(saleId: number, holds: [user: string, code: string, verdict: "p" | "r"][]): Promise<void> {
    if (holds.length === 0) return
    const byPart = new Map<string, (string | number)[]>()
    for (const [user, code, verdict] of holds) {
      const part = shardPart(saleId, userShard(user, shards), shards)
      byPart.set(part, [...(byPart.get(part) ?? []), user, code, verdict])
    }
    await Promise.all([...byPart].map(([part, args]) => scripts.shardUnslot(saleKeys(part), ["", saleId, periodMs, ...args]).catch(unavailable)))
  }

  return (userId, itemId) => submit({ userId, itemId, flags: "", round: 0 })
}

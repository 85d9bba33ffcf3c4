/**
 * The Redis + PostgreSQL engine. Every rule is decided by a Lua script (lua/); this file batches
 * requests into script calls, follows the current sale and rebuilds lost state (redis/lifecycle.ts),
 * and decodes the scripts' replies through the outcome table (sale/outcomes.ts).
 */
import type { RedisClient } from "./connect"
import type { Sql } from "postgres"
import type { Config } from "../config"
import { metrics as processMetrics, type EngineMetrics } from "../metrics"
import { ping } from "../postgres/store"
import { defaultRetentionMs } from "../sale/clock"
import { newCode, saleOfCode } from "../sale/codes"
import { UnavailableError, type CheckoutResult, type Engine, type Health, type PurchaseResult, type SaleStatus } from "../sale/engine"
import { checkoutOutcome, control, purchaseOutcome } from "../sale/outcomes"
import type { DecisionRecord, PurchaseRecord } from "../sale/records"
import { batcher } from "./batcher"
import { codeShard, partsOf, saleKeys, shardOfPart, shardsMarkerKey } from "./keys"
import { eventId } from "./journal"
import type { Kept, LedgerWriter } from "./ledger"
import { createLifecycle } from "./lifecycle"
import { registerScripts, unavailable } from "./scripts"
import { createShardedCheckout } from "./shards"

export type RedisEngineOptions = {
  redis: RedisClient
  sql: Sql
  ledger: LedgerWriter
  /** saleShards: how many hash tags one sale is split over (redis/shards.ts); 1 when not given. */
  config: Pick<Config, "saleItems" | "userLimit" | "salePeriodSeconds" | "holdSeconds"> & Partial<Pick<Config, "saleShards">>
  /** Decide at this time instead of Redis TIME (tests only). */
  now?: () => number
  /** How long a past sale's keys are kept after its last hold could be bought. */
  retentionMs?: number
  /** Whether Redis is one server or a cluster, as /health reports it. */
  mode?: "standalone" | "cluster"
  metrics?: EngineMetrics
  log?: (message: string) => void
}

export type RedisEngine = Engine & {
  /** Records SALE_SHARDS in Redis if no instance has; throws ShardsMismatch if another instance recorded a different one. */
  claimShards(): Promise<void>
  /** Makes sure the current and next sale are initialised, rebuilding from PostgreSQL if Redis lost them. */
  prepare(): Promise<void>
  /** Initialises the sale after the current one before it starts, as the maintenance timer does ahead of every boundary. */
  prepareNext(): Promise<void>
  /** Deletes a sale's keys and stops draining its journal; only for a sale whose journal is empty and whose holds are long over. */
  forget(saleId: number): Promise<void>
  /** Starts the timer that releases expired holds, prepares the next sale and forgets old ones. */
  startMaintenance(): void
  stopMaintenance(): void
}

/** Script calls for one batch at most: a sale boundary or a rebuild can each send a call back once. */
const attempts = 4
const maintenanceEveryMs = 250
const lagDegradedMs = 5000

/** Another instance recorded a different SALE_SHARDS in this Redis: deciding with ours would split the stock two ways. */
export class ShardsMismatch extends Error {}

export function createRedisEngine(options: RedisEngineOptions): RedisEngine {
  const { redis, sql, ledger, config, now, retentionMs = defaultRetentionMs, mode = "standalone", log = console.log, metrics = processMetrics } = options
  const shards = config.saleShards ?? 1
  const scripts = registerScripts(redis)
  const periodMs = config.salePeriodSeconds * 1000
  const holdMs = config.holdSeconds * 1000
  const sale = createLifecycle({ redis, sql, scripts, ledger, periodMs, holdMs, retentionMs, shards, saleItems: config.saleItems, now, log, onRebuild: () => metrics.rebuilds.inc() })
  let mismatch: string | undefined

  /** Runs a script on a part of the current sale (redis/keys.ts), following the current sale (wrongSale) and rebuilding lost state (notReady). */
  async function decide(script: "checkout" | "status" | "shardHold", part: (saleId: number) => string, args: (saleId: number) => (string | number)[]): Promise<[number, (string | number)[]]> {
    if (mismatch) throw new UnavailableError(mismatch, 5)
    let saleId = sale.currentSale()
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts[script](saleKeys(part(saleId)), args(saleId)).catch(unavailable)
      const status = Number(reply[0])
      if (status === control.wrongSale) {
        saleId = Number(reply[1])
        sale.syncClock().catch(() => {})
      } else if (status === control.notReady) {
        await sale.rebuild(saleId)
      } else {
        return [saleId, reply]
      }
    }
    throw new UnavailableError("the current sale is changing; try again")
  }

  /**
   * Hands a script call's records to the ledger. A success that changed the sale is answered once it is
   * committed (or the commit wait is over); refusals and repeats are answered at once and kept anyway.
   */
  function answer<R>(part: string, entryId: string, records: DecisionRecord[], results: R[], waits: (record: DecisionRecord) => boolean, afterCommit: (result: R, record: DecisionRecord, kept: Kept) => R): (R | Promise<R>)[] {
    const kept = ledger.keep(part, entryId, records)
    return results.map((result, i) => (waits(records[i]!) ? kept.then((k) => afterCommit(result, records[i]!, k)) : result))
  }

  const checkoutBatched = batcher<{ userId: string; itemId: number }, CheckoutResult | Promise<CheckoutResult>>(async (batch) => {
    metrics.batchSize.observe(batch.length, "checkout")
    const [saleId, reply] = await decide("checkout", String, (saleId) => {
      const args: (string | number)[] = [sale.nowArg(), saleId, periodMs, config.saleItems, config.userLimit, holdMs]
      for (const w of batch) args.push(w.itemId, w.userId, newCode(saleId))
      return args
    })
    const at = Number(reply[1])
    const entryId = String(reply[2])
    const records: DecisionRecord[] = []
    const results = batch.map((w, i): CheckoutResult => {
      const outcome = checkoutOutcome(Number(reply[3 + 3 * i]))
      const code = String(reply[4 + 3 * i])
      const expiresAt = Number(reply[5 + 3 * i])
      records.push({ kind: "checkout", saleId, eventId: eventId(entryId, i), userId: w.userId, itemId: w.itemId, outcome, code: code || null, expiresAt: expiresAt || null, at })
      return outcome === "reserved" || outcome === "repeated" ? { ok: true, repeated: outcome === "repeated", code, saleId, itemId: w.itemId, expiresAt } : { ok: false, error: outcome }
    })
    return answer(String(saleId), entryId, records, results, (r) => r.outcome === "reserved", (result) => result)
  })

  const checkout =
    shards === 1
      ? async (userId: string, itemId: number) => checkoutBatched({ userId, itemId })
      : createShardedCheckout({ redis, scripts, sale, ledger, metrics, config, shards, periodMs, holdMs, decide })

  /** Purchases of one part of a sale, decided together (lua/purchase.lua), rebuilding the sale first if Redis lost it. */
  async function purchaseBatch(saleId: number, part: string, codes: string[]): Promise<(PurchaseResult | Promise<PurchaseResult>)[]> {
    metrics.batchSize.observe(codes.length, "purchase")
    if (mismatch) throw new UnavailableError(mismatch, 5)
    const shard = shardOfPart(part)
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts.purchase(saleKeys(part), [sale.nowArg(), saleId, periodMs, holdMs, ...codes]).catch(unavailable)
      const status = Number(reply[0])
      if (status === control.notReady) {
        await sale.rebuild(saleId)
        continue
      }
      if (status !== 0) return codes.map(() => ({ ok: false, error: purchaseOutcome(status) as "code_not_found" }))
      const at = Number(reply[1])
      const entryId = String(reply[2])
      const records: DecisionRecord[] = []
      const results = codes.map((code, i): PurchaseResult => {
        const outcome = purchaseOutcome(Number(reply[3 + 3 * i]))
        const itemId = Number(reply[4 + 3 * i]) || null
        const userId = String(reply[5 + 3 * i]) || null
        records.push({ kind: "purchase", saleId, eventId: eventId(entryId, i, shard), code, outcome, userId, itemId, at })
        return outcome === "purchased" ? { ok: true, saleId, itemId: itemId!, userId: userId!, purchasedAt: at } : { ok: false, error: outcome }
      })
      return answer(part, entryId, records, results, (r) => r.outcome === "purchased", (result, record, kept) => {
        if (!kept.refused.has((record as PurchaseRecord).code)) return result
        // PostgreSQL has this item sold under another code (Redis lost a sale and sold it again): not a sale.
        sale.resync(saleId).catch(() => {})
        return { ok: false, error: "item_sold" }
      })
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  /** One queue per part of a sale with purchases waiting; a queue goes once idle, since clients name the sale (and shard) in the code. */
  const purchaseQueues = new Map<string, (code: string) => Promise<PurchaseResult | Promise<PurchaseResult>>>()

  function purchase(code: string): Promise<PurchaseResult> {
    const saleId = saleOfCode(code)
    const shard = shards === 1 ? undefined : codeShard(code, shards)
    if (saleId === undefined || (shards > 1 && shard === undefined)) return Promise.resolve({ ok: false, error: "code_not_found" })
    const part = partsOf(saleId, shards)[shard ?? 0]!
    let queue = purchaseQueues.get(part)
    if (!queue) {
      queue = batcher<string, PurchaseResult | Promise<PurchaseResult>>(
        (codes) => purchaseBatch(saleId, part, codes),
        () => purchaseQueues.delete(part),
      )
      purchaseQueues.set(part, queue)
    }
    return queue(code) as Promise<PurchaseResult>
  }

  /** The sale's counters: one script call per part, summed (each part is read at its own instant). */
  async function status(): Promise<SaleStatus> {
    for (let attempt = 0; ; attempt++) {
      const replies = await Promise.all(
        Array.from({ length: shards }, (_, k) => decide("status", (saleId) => partsOf(saleId, shards)[k]!, (saleId) => [sale.nowArg(), saleId, periodMs])),
      )
      const saleId = replies[0]![0]
      // Across a sale boundary the parts may answer for different sales: ask again.
      if (replies.some(([other]) => other !== saleId)) {
        if (attempt < attempts) continue
        throw new UnavailableError("the current sale is changing; try again")
      }
      const n = replies.map(([, r]) => r.map(Number))
      const sum = (i: number) => n.reduce((total, r) => total + r[i]!, 0)
      return {
        saleId,
        now: Math.max(...n.map((r) => r[1]!)),
        itemsSold: sum(2),
        itemsReserved: sum(3),
        checkouts: { accepted: sum(4), rejected: sum(5) },
        purchases: { accepted: sum(6), rejected: sum(7) },
      }
    }
  }

  /** Records our SALE_SHARDS if no instance has; refuses to decide while another one is recorded. */
  async function claimShards(): Promise<void> {
    await redis.set(shardsMarkerKey, shards, "NX")
    const recorded = await redis.get(shardsMarkerKey)
    if (recorded === null || Number(recorded) === shards) {
      if (mismatch) log("SALE_SHARDS agrees with Redis again; deciding")
      mismatch = undefined
      return
    }
    const message = `this Redis serves sales split into ${recorded} (key ${shardsMarkerKey}), not ${shards}: every instance must split sales alike, so this one decides nothing (README: changing SALE_SHARDS)`
    if (mismatch !== message) log(message)
    mismatch = message
    throw new ShardsMismatch(message)
  }

  async function health(): Promise<Health> {
    const started = performance.now()
    let ready: boolean
    try {
      ready = (await sale.missingParts(sale.currentSale())).length === 0 && !mismatch
    } catch (error) {
      return { status: "down", checks: { engine: "redis", redis: { status: "down", error: (error as Error).message } } }
    }
    const redisCheck = { status: mismatch ? "down" : "ok", mode, sale_shards: shards, error: mismatch, latency_ms: Math.round((performance.now() - started) * 100) / 100, sale_ready: ready }
    const [backlog, postgres] = await Promise.all([ledger.backlog().catch((error: Error) => ({ entries: -1, oldestAgeMs: -1, error: error.message })), ping(sql)])
    const writer = ledger.postgres()
    const postgresCheck: Record<string, unknown> = postgres.status === "ok" && !writer.up ? { status: "down", error: writer.error } : postgres
    const unknown = "error" in backlog
    const lagging = unknown || backlog.oldestAgeMs > lagDegradedMs
    const ledgerCheck = unknown
      ? { status: "unknown", error: backlog.error }
      : { status: lagging ? "lagging" : "ok", backlog_entries: backlog.entries, oldest_unwritten_seconds: Math.round(backlog.oldestAgeMs / 100) / 10 }
    // A background loop that keeps failing is said, never swallowed.
    const failing = { maintenance: lastMaintenanceError || undefined, journal_recovery: ledger.recoveryError() }
    const background = failing.maintenance || failing.journal_recovery ? { status: "failing", ...failing } : { status: "ok" }
    const status = !ready ? "down" : postgresCheck.status !== "ok" || lagging || background.status !== "ok" ? "degraded" : "ok"
    return { status, checks: { engine: "redis", redis: redisCheck, postgres: postgresCheck, ledger: ledgerCheck, background } }
  }

  let timer: ReturnType<typeof setInterval> | undefined
  let maintaining = false
  let lastMaintenanceError = ""
  return {
    name: "redis",
    checkout,
    purchase,
    status,
    health,
    claimShards,
    prepare: sale.prepare,
    prepareNext: sale.prepareNext,
    forget: sale.forget,
    startMaintenance() {
      timer ??= setInterval(() => {
        if (maintaining) return
        maintaining = true
        claimShards()
          .then(() => sale.maintain())
          .then(() => (lastMaintenanceError = ""))
          .catch((error: Error) => {
            if (error.message !== lastMaintenanceError && !(error instanceof ShardsMismatch)) log(`maintenance: ${error.message}`)
            lastMaintenanceError = error.message
          })
          .finally(() => (maintaining = false))
      }, maintenanceEveryMs)
    },
    stopMaintenance() {
      clearInterval(timer)
      timer = undefined
    },
  }
}

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
import { saleKeys, statsKey } from "./keys"
import { eventId } from "./journal"
import type { Kept, LedgerWriter } from "./ledger"
import { createLifecycle } from "./lifecycle"
import { registerScripts, unavailable } from "./scripts"

export type RedisEngineOptions = {
  redis: RedisClient
  sql: Sql
  ledger: LedgerWriter
  config: Pick<Config, "saleItems" | "userLimit" | "salePeriodSeconds" | "holdSeconds">
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
  /** Makes sure the current and next sale are initialised, rebuilding from PostgreSQL if Redis lost them. */
  prepare(): Promise<void>
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

export function createRedisEngine(options: RedisEngineOptions): RedisEngine {
  const { redis, sql, ledger, config, now, retentionMs = defaultRetentionMs, mode = "standalone", log = console.log, metrics = processMetrics } = options
  const scripts = registerScripts(redis)
  const periodMs = config.salePeriodSeconds * 1000
  const holdMs = config.holdSeconds * 1000
  const sale = createLifecycle({ redis, sql, scripts, ledger, periodMs, holdMs, retentionMs, now, log, onRebuild: () => metrics.rebuilds.inc() })

  /** Runs a script for the current sale, following the current sale (wrongSale) and rebuilding lost state (notReady). */
  async function decide(script: "checkout" | "status", args: (saleId: number) => (string | number)[]): Promise<[number, (string | number)[]]> {
    let saleId = sale.currentSale()
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts[script](saleKeys(saleId), args(saleId)).catch(unavailable)
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
  function answer<R>(saleId: number, entryId: string, records: DecisionRecord[], results: R[], waits: (record: DecisionRecord) => boolean, afterCommit: (result: R, record: DecisionRecord, kept: Kept) => R): (R | Promise<R>)[] {
    const kept = ledger.keep(saleId, entryId, records)
    return results.map((result, i) => (waits(records[i]!) ? kept.then((k) => afterCommit(result, records[i]!, k)) : result))
  }

  const checkoutBatched = batcher<{ userId: string; itemId: number }, CheckoutResult | Promise<CheckoutResult>>(async (batch) => {
    metrics.batchSize.observe(batch.length, "checkout")
    const [saleId, reply] = await decide("checkout", (saleId) => {
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
    return answer(saleId, entryId, records, results, (r) => r.outcome === "reserved", (result) => result)
  })

  const checkout = async (userId: string, itemId: number) => checkoutBatched({ userId, itemId })

  /** Purchases of one sale, decided together (lua/purchase.lua), rebuilding the sale first if Redis lost it. */
  async function purchaseBatch(saleId: number, codes: string[]): Promise<(PurchaseResult | Promise<PurchaseResult>)[]> {
    metrics.batchSize.observe(codes.length, "purchase")
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts.purchase(saleKeys(saleId), [sale.nowArg(), saleId, periodMs, holdMs, ...codes]).catch(unavailable)
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
        records.push({ kind: "purchase", saleId, eventId: eventId(entryId, i), code, outcome, userId, itemId, at })
        return outcome === "purchased" ? { ok: true, saleId, itemId: itemId!, userId: userId!, purchasedAt: at } : { ok: false, error: outcome }
      })
      return answer(saleId, entryId, records, results, (r) => r.outcome === "purchased", (result, record, kept) => {
        if (!kept.refused.has((record as PurchaseRecord).code)) return result
        // PostgreSQL has this item sold under another code (Redis lost a sale and sold it again): not a sale.
        sale.resync(saleId).catch(() => {})
        return { ok: false, error: "item_sold" }
      })
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  /** One queue per sale with purchases waiting; a queue goes once idle, since clients name the sale in the code. */
  const purchaseQueues = new Map<number, (code: string) => Promise<PurchaseResult | Promise<PurchaseResult>>>()

  function purchase(code: string): Promise<PurchaseResult> {
    const saleId = saleOfCode(code)
    if (saleId === undefined) return Promise.resolve({ ok: false, error: "code_not_found" })
    let queue = purchaseQueues.get(saleId)
    if (!queue) {
      queue = batcher<string, PurchaseResult | Promise<PurchaseResult>>(
        (codes) => purchaseBatch(saleId, codes),
        () => purchaseQueues.delete(saleId),
      )
      purchaseQueues.set(saleId, queue)
    }
    return queue(code) as Promise<PurchaseResult>
  }

  async function status(): Promise<SaleStatus> {
    const [saleId, r] = await decide("status", (saleId) => [sale.nowArg(), saleId, periodMs])
    const n = r.map(Number)
    return {
      saleId,
      now: n[1]!,
      itemsSold: n[2]!,
      itemsReserved: n[3]!,
      checkouts: { accepted: n[4]!, rejected: n[5]! },
      purchases: { accepted: n[6]!, rejected: n[7]! },
    }
  }

  async function health(): Promise<Health> {
    const started = performance.now()
    let ready: boolean
    try {
      ready = (await redis.exists(statsKey(sale.currentSale()))) === 1
    } catch (error) {
      return { status: "down", checks: { engine: "redis", redis: { status: "down", error: (error as Error).message } } }
    }
    const redisCheck = { status: "ok", mode, latency_ms: Math.round((performance.now() - started) * 100) / 100, sale_ready: ready }
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
    prepare: sale.prepare,
    forget: sale.forget,
    startMaintenance() {
      timer ??= setInterval(() => {
        if (maintaining) return
        maintaining = true
        sale
          .maintain()
          .then(() => (lastMaintenanceError = ""))
          .catch((error: Error) => {
            if (error.message !== lastMaintenanceError) log(`maintenance: ${error.message}`)
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

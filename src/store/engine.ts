/**
 * The Redis + PostgreSQL engine. Every rule is decided by a Lua script (see lua/);
 * this file picks the sale's keys, retries when the caller's idea of the current
 * sale or its state is stale, and keeps sales initialised.
 */
import type Redis from "ioredis"
import type { Sql } from "postgres"
import type { Config } from "../config"
import { checkoutErrors, purchaseErrors, type CheckoutResult, type Engine, type Health, type PurchaseResult, type SaleStatus } from "../sale/engine"
import { UnavailableError } from "../errors"
import { saleIdAt, salePurchasableUntilMs } from "../sale/clock"
import { newCode, saleOfCode } from "../sale/codes"
import { emptySnapshot, loadSale, type SaleSnapshot } from "../ledger/recovery"
import { ensureLedgerGroup, type LedgerWriter } from "../ledger/writer"
import { logKey, saleKeys, salesRegistryKey, statsKey } from "./keys"
import { registerScripts } from "./scripts"

export type RedisEngineOptions = {
  redis: Redis
  sql: Sql
  ledger: LedgerWriter
  config: Pick<Config, "saleItems" | "userLimit" | "salePeriodSeconds" | "holdSeconds">
  /** Decide at this time instead of Redis TIME (tests only). */
  now?: () => number
  /** How long a past sale's keys are kept after its last hold could be bought. */
  retentionMs?: number
  log?: (message: string) => void
}

export type RedisEngine = Engine & {
  /** Makes sure the current and next sale are initialised, rebuilding from PostgreSQL if Redis lost them. */
  prepare(): Promise<void>
  /** Deletes a sale's keys and stops draining its stream; only for a sale whose stream is empty and whose holds are long over. */
  forget(saleId: number): Promise<void>
  /** Starts the timer that releases expired holds, prepares the next sale and forgets old ones. */
  startMaintenance(): void
  stopMaintenance(): void
}

const WRONG_SALE = -10
const NOT_READY = -11
const attempts = 4
/** Requests sent to Redis in one script call at most; more wait for the next call. */
const maxBatch = 256
const maintenanceEveryMs = 250
const lagDegradedMs = 5000

/** Errors from Redis that mean "cannot decide now" rather than a bug. */
function unavailable(error: unknown): never {
  const message = (error as Error)?.message ?? String(error)
  if (/ERR|NOSCRIPT|WRONGTYPE/.test(message) && !/LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN/.test(message)) throw error
  throw new UnavailableError(`redis: ${message}`)
}

export function createRedisEngine(options: RedisEngineOptions): RedisEngine {
  const { redis, sql, ledger, config, now, retentionMs = 24 * 3600_000, log = console.log } = options
  const scripts = registerScripts(redis)
  const periodMs = config.salePeriodSeconds * 1000
  const holdMs = config.holdSeconds * 1000
  const rebuilding = new Map<number, Promise<void>>()
  let clockOffsetMs = 0
  let timer: ReturnType<typeof setInterval> | undefined
  let lastClockSync = 0
  let lastPrune = 0

  const nowArg = () => (now ? String(now()) : "")
  /** Our best guess of Redis TIME; the scripts correct it when it is wrong at a boundary. */
  const estimatedNow = () => (now ? now() : Date.now() + clockOffsetMs)
  const currentSale = () => saleIdAt(estimatedNow(), periodMs)

  async function syncClock(): Promise<void> {
    if (now) return
    const before = Date.now()
    const [seconds, micros] = await redis.time()
    const after = Date.now()
    clockOffsetMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2
    lastClockSync = after
  }

  function initArgs(saleId: number, mode: "empty" | "rebuild", snapshot: SaleSnapshot): (string | number)[] {
    const args: (string | number)[] = [nowArg(), periodMs, saleId, mode]
    args.push(snapshot.checkouts.accepted, snapshot.checkouts.rejected, snapshot.purchases.accepted, snapshot.purchases.rejected)
    args.push(snapshot.sold.length)
    for (const s of snapshot.sold) args.push(s.itemId, s.userId, s.code, s.at)
    args.push(snapshot.holds.length)
    for (const h of snapshot.holds) args.push(h.itemId, h.userId, h.code, h.at)
    return args
  }

  async function register(saleId: number): Promise<void> {
    await ensureLedgerGroup(redis, saleId)
    await redis.sadd(salesRegistryKey, saleId)
    ledger.track(saleId)
  }

  /** Initialises a sale that has not started yet: nothing can have happened in it, so PostgreSQL is not needed. */
  async function initEmpty(saleId: number): Promise<void> {
    await register(saleId)
    await scripts.initSale(saleKeys(saleId), initArgs(saleId, "empty", emptySnapshot()))
  }

  /** Rebuilds a sale from PostgreSQL; concurrent callers share one rebuild. */
  function rebuild(saleId: number): Promise<void> {
    const running = rebuilding.get(saleId)
    if (running) return running
    const started = (async () => {
      await register(saleId)
      let snapshot: SaleSnapshot
      try {
        snapshot = await loadSale(sql, saleId, estimatedNow())
      } catch (error) {
        throw new UnavailableError(`sale ${saleId} must be rebuilt from PostgreSQL, which is unreachable: ${(error as Error).message}`, 2)
      }
      const done = await scripts.initSale(saleKeys(saleId), initArgs(saleId, "rebuild", snapshot))
      if (done === 1) log(`sale ${saleId}: rebuilt from PostgreSQL (${snapshot.sold.length} sold, ${snapshot.holds.length} live holds)`)
    })().finally(() => rebuilding.delete(saleId))
    rebuilding.set(saleId, started)
    return started
  }

  /** Runs a script for the current sale, following the current sale (WRONG_SALE) and rebuilding lost state (NOT_READY). */
  async function decide(script: "checkout" | "status", args: (saleId: number) => (string | number)[]): Promise<[number, (string | number)[]]> {
    let saleId = currentSale()
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts[script](saleKeys(saleId), args(saleId)).catch(unavailable)
      const status = Number(reply[0])
      if (status === WRONG_SALE) {
        saleId = Number(reply[1])
        syncClock().catch(() => {})
      } else if (status === NOT_READY) {
        await rebuild(saleId)
      } else {
        return [saleId, reply]
      }
    }
    throw new UnavailableError("the current sale is changing; try again")
  }

  /**
   * Requests wait here and are decided in one script call per sale, each as if alone, in arrival order.
   * One call per queue is in flight at a time and what arrives meanwhile forms the next batch: batches
   * grow with load, round trips do not.
   */
  function batcher<Input, Output>(decideBatch: (inputs: Input[]) => Promise<Output[]>, onIdle = () => {}): (input: Input) => Promise<Output> {
    type Waiting = { input: Input; resolve: (output: Output) => void; reject: (error: unknown) => void }
    let waiting: Waiting[] = []
    let deciding = false
    async function flush(): Promise<void> {
      deciding = true
      const batch = waiting.slice(0, maxBatch)
      waiting = waiting.slice(maxBatch)
      try {
        const outputs = await decideBatch(batch.map((w) => w.input))
        batch.forEach((w, i) => w.resolve(outputs[i]!))
      } catch (error) {
        for (const w of batch) w.reject(error)
      } finally {
        deciding = false
        if (waiting.length > 0) flush()
        else onIdle()
      }
    }
    return (input) =>
      new Promise((resolve, reject) => {
        waiting.push({ input, resolve, reject })
        if (!deciding) flush()
      })
  }

  const checkoutBatched = batcher<{ userId: string; itemId: number }, CheckoutResult>(async (batch) => {
    const [saleId, reply] = await decide("checkout", (saleId) => {
      const args: (string | number)[] = [nowArg(), saleId, periodMs, config.saleItems, config.userLimit, holdMs]
      for (const w of batch) args.push(w.itemId, w.userId, newCode(saleId))
      return args
    })
    return batch.map((w, i) => {
      const status = Number(reply[2 + 3 * i])
      return status >= 0
        ? { ok: true, repeated: status === 1, code: String(reply[3 + 3 * i]), saleId, itemId: w.itemId, expiresAt: Number(reply[4 + 3 * i]) }
        : { ok: false, error: checkoutErrors[status as keyof typeof checkoutErrors] }
    })
  })

  const checkout = (userId: string, itemId: number) => checkoutBatched({ userId, itemId })

  /** Purchases of one sale, decided together (lua/purchase.lua), rebuilding the sale first if Redis lost it. */
  async function purchaseBatch(saleId: number, codes: string[]): Promise<PurchaseResult[]> {
    for (let attempt = 0; attempt < attempts; attempt++) {
      const reply = await scripts.purchase(saleKeys(saleId), [nowArg(), saleId, periodMs, holdMs, ...codes]).catch(unavailable)
      const status = Number(reply[0])
      if (status === NOT_READY) {
        await rebuild(saleId)
        continue
      }
      if (status !== 0) return codes.map(() => ({ ok: false, error: "code_not_found" }))
      const purchasedAt = Number(reply[1])
      return codes.map((_, i) => {
        const result = Number(reply[2 + 3 * i])
        return result === 0
          ? { ok: true, saleId, itemId: Number(reply[3 + 3 * i]), userId: String(reply[4 + 3 * i]), purchasedAt }
          : { ok: false, error: purchaseErrors[result as keyof typeof purchaseErrors] }
      })
    }
    throw new UnavailableError("the sale is being rebuilt; try again")
  }

  /** One queue per sale with purchases waiting; a queue goes once idle, since clients name the sale in the code. */
  const purchaseQueues = new Map<number, (code: string) => Promise<PurchaseResult>>()

  function purchase(code: string): Promise<PurchaseResult> {
    const saleId = saleOfCode(code)
    if (saleId === undefined) return Promise.resolve({ ok: false, error: "code_not_found" })
    let queue = purchaseQueues.get(saleId)
    if (!queue) {
      queue = batcher<string, PurchaseResult>(
        (codes) => purchaseBatch(saleId, codes),
        () => purchaseQueues.delete(saleId),
      )
      purchaseQueues.set(saleId, queue)
    }
    return queue(code)
  }

  async function status(): Promise<SaleStatus> {
    const [saleId, r] = await decide("status", (saleId) => [nowArg(), saleId, periodMs])
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
    const saleId = currentSale()
    let ready: boolean
    try {
      ready = (await redis.exists(statsKey(saleId))) === 1
    } catch (error) {
      return { status: "down", checks: { engine: "redis", redis: { status: "down", error: (error as Error).message } } }
    }
    const redisCheck = { status: "ok", latency_ms: Math.round((performance.now() - started) * 100) / 100, sale_ready: ready }
    const [backlog, postgres] = await Promise.all([
      ledger.backlog().catch(() => ({ entries: -1, oldestAgeMs: -1 })),
      Promise.race([
        sql`select 1`.then(() => ({ status: "ok" }) as Record<string, unknown>),
        Bun.sleep(1000).then(() => ({ status: "down", error: "no answer within 1 s" })),
      ]).catch((error: Error) => ({ status: "down", error: error.message })),
    ])
    const writer = ledger.postgres()
    if (postgres.status === "ok" && !writer.up) Object.assign(postgres, { status: "down", error: writer.error })
    const lagging = backlog.oldestAgeMs > lagDegradedMs
    const ledgerCheck = { status: lagging ? "lagging" : "ok", backlog_entries: backlog.entries, oldest_unwritten_seconds: Math.round(backlog.oldestAgeMs / 100) / 10 }
    const status = !ready ? "down" : postgres.status !== "ok" || lagging ? "degraded" : "ok"
    return { status, checks: { engine: "redis", redis: redisCheck, postgres, ledger: ledgerCheck } }
  }

  async function prepare(): Promise<void> {
    if (Date.now() - lastClockSync > 5000) await syncClock()
    const saleId = currentSale()
    if ((await redis.exists(statsKey(saleId))) === 0) await rebuild(saleId)
    if ((await redis.exists(statsKey(saleId + 1))) === 0) await initEmpty(saleId + 1)
  }

  /** Deletes the keys of sales whose last hold expired longer than the retention ago, once the ledger has them all. */
  async function prune(): Promise<void> {
    const cutoff = estimatedNow() - retentionMs
    for (const saleId of (await redis.smembers(salesRegistryKey)).map(Number)) {
      if (salePurchasableUntilMs(saleId, periodMs, holdMs) > cutoff) continue
      if ((await redis.xlen(logKey(saleId))) > 0) continue
      await forget(saleId)
    }
  }

  async function forget(saleId: number): Promise<void> {
    await redis.srem(salesRegistryKey, saleId)
    ledger.untrack(saleId)
    await redis.del(...saleKeys(saleId))
  }

  async function maintain(): Promise<void> {
    await prepare()
    const saleId = currentSale()
    await scripts.release(saleKeys(saleId), [nowArg()])
    await scripts.release(saleKeys(saleId - 1), [nowArg()])
    if (Date.now() - lastPrune > 60_000) {
      lastPrune = Date.now()
      await prune()
    }
  }

  let maintaining = false
  let lastMaintenanceError = ""
  return {
    name: "redis",
    checkout,
    purchase,
    status,
    health,
    prepare,
    forget,
    startMaintenance() {
      timer ??= setInterval(() => {
        if (maintaining) return
        maintaining = true
        maintain()
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

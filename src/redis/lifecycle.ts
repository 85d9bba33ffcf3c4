/**
 * A sale's life in Redis: the clock that says which sale is current, initialising the next sale before
 * it starts, rebuilding a sale from PostgreSQL when Redis lost it, and forgetting sales past retention.
 */
import type { RedisClient } from "./connect"
import type { Sql } from "postgres"
import { loadSale } from "../postgres/store"
import { saleForgottenAtMs, saleIdAt } from "../sale/clock"
import { UnavailableError } from "../sale/engine"
import { emptySnapshot, type SaleSnapshot } from "../sale/records"
import type { LedgerWriter } from "./ledger"
import { logKey, saleKeys, saleRegistryKey, statsKey } from "./keys"
import type { Scripts } from "./scripts"

export type LifecycleOptions = {
  redis: RedisClient
  sql: Sql
  scripts: Scripts
  ledger: LedgerWriter
  periodMs: number
  holdMs: number
  retentionMs: number
  /** Decide at this time instead of Redis TIME (tests only). */
  now?: () => number
  log: (message: string) => void
  /** Called once per rebuild that initialised the sale. */
  onRebuild?: () => void
}

export type Lifecycle = ReturnType<typeof createLifecycle>

/** Beyond the commit wait, for an answer already decided but still on its way out of another instance. */
const commitWaitMarginMs = 100

export function createLifecycle({ redis, sql, scripts, ledger, periodMs, holdMs, retentionMs, now, log, onRebuild = () => {} }: LifecycleOptions) {
  const rebuilding = new Map<number, Promise<void>>()
  let clockOffsetMs = 0
  let lastClockSync = 0
  let lastPrune = 0

  /** The now_ms argument of every script: '' lets the script read Redis TIME. */
  const nowArg = () => (now ? String(now()) : "")
  /** Our best guess of Redis TIME; the scripts correct it when it is wrong at a boundary. */
  const estimatedNow = () => (now ? now() : Date.now() + clockOffsetMs)
  const currentSale = () => saleIdAt(estimatedNow(), periodMs)

  async function syncClock(): Promise<void> {
    if (now) return
    const before = Date.now()
    // The clock of the node that decides the current sale (on a cluster, TIME alone goes to any master).
    const [seconds, micros] = (await redis.eval("return redis.call('TIME')", 1, statsKey(currentSale()))) as [string, string]
    const after = Date.now()
    clockOffsetMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2
    lastClockSync = after
  }

  function initArgs(saleId: number, mode: "empty" | "rebuild", snapshot: SaleSnapshot): (string | number)[] {
    const args: (string | number)[] = [nowArg(), saleId, periodMs, mode]
    args.push(snapshot.checkouts.accepted, snapshot.checkouts.rejected, snapshot.purchases.accepted, snapshot.purchases.rejected)
    args.push(snapshot.sold.length)
    for (const s of snapshot.sold) args.push(s.itemId, s.userId, s.code, s.at)
    args.push(snapshot.holds.length)
    for (const h of snapshot.holds) args.push(h.itemId, h.userId, h.code, h.at)
    return args
  }

  const register = (saleId: number) => redis.sadd(saleRegistryKey, saleId)

  /** Initialises a sale that has not started yet: nothing can have happened in it, so PostgreSQL is not needed. */
  async function initEmpty(saleId: number): Promise<void> {
    await register(saleId)
    await scripts.initSale(saleKeys(saleId), initArgs(saleId, "empty", emptySnapshot()))
  }

  /**
   * Rebuilds a sale from PostgreSQL; concurrent callers share one rebuild. First what the journal still
   * holds goes into PostgreSQL, then the rebuild waits out the longest any instance waits for a commit
   * before answering: a success answered by then is committed, so the rebuilt sale has it.
   */
  function rebuild(saleId: number): Promise<void> {
    const running = rebuilding.get(saleId)
    if (running) return running
    const started = (async () => {
      await register(saleId)
      let snapshot: SaleSnapshot
      try {
        await ledger.drainSale(saleId)
        await Bun.sleep(ledger.commitWaitMs + commitWaitMarginMs)
        snapshot = await loadSale(sql, saleId, estimatedNow())
      } catch (error) {
        throw new UnavailableError(`sale ${saleId} must be rebuilt from PostgreSQL, which is unreachable: ${(error as Error).message}`, 2)
      }
      const done = await scripts.initSale(saleKeys(saleId), initArgs(saleId, "rebuild", snapshot))
      if (done === 1) onRebuild()
      if (done === 1) log(`sale ${saleId}: rebuilt from PostgreSQL (${snapshot.sold.length} sold, ${snapshot.holds.length} live holds)`)
    })().finally(() => rebuilding.delete(saleId))
    rebuilding.set(saleId, started)
    return started
  }

  /** Makes sure the current and next sale are initialised, rebuilding from PostgreSQL if Redis lost them. */
  async function prepare(): Promise<void> {
    if (Date.now() - lastClockSync > 5000) await syncClock()
    const saleId = currentSale()
    if ((await redis.exists(statsKey(saleId))) === 0) await rebuild(saleId)
    if ((await redis.exists(statsKey(saleId + 1))) === 0) await initEmpty(saleId + 1)
  }

  /** Deletes a sale's keys and stops draining its journal; only for a sale whose journal is empty and whose holds are long over. */
  async function forget(saleId: number): Promise<void> {
    await redis.srem(saleRegistryKey, saleId)
    await redis.del(...saleKeys(saleId))
  }

  /** Forgets the sales past retention (sale/clock.ts), once the ledger has all of their records. */
  async function prune(): Promise<void> {
    const at = estimatedNow()
    for (const saleId of (await redis.smembers(saleRegistryKey)).map(Number)) {
      if (saleForgottenAtMs(saleId, periodMs, holdMs, retentionMs) > at) continue
      if ((await redis.xlen(logKey(saleId))) > 0) continue
      await forget(saleId)
    }
  }

  /** Keeps sales prepared, releases the expired holds of the current and previous sale, and prunes once a minute. */
  async function maintain(): Promise<void> {
    await prepare()
    const saleId = currentSale()
    await scripts.release(saleKeys(saleId), [nowArg(), saleId, periodMs])
    await scripts.release(saleKeys(saleId - 1), [nowArg(), saleId - 1, periodMs])
    // A prune that fails is tried again on the next round, so its error stays visible until it passes.
    if (Date.now() - lastPrune > 60_000) {
      await prune()
      lastPrune = Date.now()
    }
  }

  /** Makes every instance rebuild this sale from PostgreSQL: Redis and the store disagree about it. */
  async function resync(saleId: number): Promise<void> {
    log(`sale ${saleId}: Redis and PostgreSQL disagree; rebuilding it from PostgreSQL`)
    await redis.del(statsKey(saleId))
  }

  return { nowArg, estimatedNow, currentSale, syncClock, rebuild, resync, prepare, forget, maintain }
}

/**
 * A sale's life in Redis: the clock that says which sale is current, initialising the next sale before
 * it starts, rebuilding a sale from PostgreSQL when Redis lost it, and forgetting sales past retention.
 */
import type { RedisClient } from "./connect"
import type { Sql } from "postgres"
import { loadSale, loadShardCounters } from "../postgres/store"
import { saleForgottenAtMs, saleIdAt } from "../sale/clock"
import { UnavailableError } from "../sale/engine"
import { emptySnapshot, type SaleSnapshot } from "../sale/records"
import type { LedgerWriter } from "./ledger"
import { codeAlphabet } from "../sale/codes"
import { itemShard, logKey, partsOf, saleKeys, saleOfPart, saleRegistryKey, statsKey, userShard } from "./keys"
import { unavailable, type Scripts } from "./scripts"

export type LifecycleOptions = {
  redis: RedisClient
  sql: Sql
  scripts: Scripts
  ledger: LedgerWriter
  periodMs: number
  holdMs: number
  retentionMs: number
  /** How many shards a sale is split into (redis/shards.ts); 1: a sale is one part. */
  shards: number
  saleItems: number
  /** Decide at this time instead of Redis TIME (tests only). */
  now?: () => number
  log: (message: string) => void
  /** Called once per rebuild that initialised the sale (or some of its shards). */
  onRebuild?: (saleId: number) => void
}

export type Lifecycle = ReturnType<typeof createLifecycle>

/** A shard's items, read together with whether it is initialised (nil if not): KEYS items, stats. */
const itemsIfReady = "if redis.call('EXISTS', KEYS[2]) == 0 then return false end return redis.call('HGETALL', KEYS[1])"

/** Beyond the commit wait, for an answer already decided but still on its way out of another instance. */
const commitWaitMarginMs = 100

export function createLifecycle({ redis, sql, scripts, ledger, periodMs, holdMs, retentionMs, shards, saleItems, now, log, onRebuild = () => {} }: LifecycleOptions) {
  const parts = (saleId: number) => partsOf(saleId, shards)
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
    const [seconds, micros] = (await redis.eval("return redis.call('TIME')", 1, statsKey(parts(currentSale())[0]!))) as [string, string]
    const after = Date.now()
    clockOffsetMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2
    lastClockSync = after
  }

  function initArgs(saleId: number, mode: "empty" | "rebuild" | "empty-shard" | "rebuild-shard", snapshot: SaleSnapshot, users?: Map<string, string>): (string | number)[] {
    const args: (string | number)[] = [nowArg(), saleId, periodMs, mode]
    args.push(snapshot.checkouts.accepted, snapshot.checkouts.rejected, snapshot.purchases.accepted, snapshot.purchases.rejected)
    args.push(snapshot.sold.length)
    for (const s of snapshot.sold) args.push(s.itemId, s.userId, s.code, s.at)
    args.push(snapshot.holds.length)
    for (const h of snapshot.holds) args.push(h.itemId, h.userId, h.code, h.at)
    if (users) {
      args.push(users.size)
      for (const [user, value] of users) args.push(user, value)
    }
    return args
  }

  const register = (saleId: number) => redis.sadd(saleRegistryKey, ...parts(saleId))
  const missingParts = async (saleId: number) => {
    const all = parts(saleId)
    const present = await Promise.all(all.map((part) => redis.exists(statsKey(part))))
    return all.filter((_, i) => present[i] === 0)
  }

  /** Initialises a sale that has not started yet: nothing can have happened in it, so PostgreSQL is not needed. */
  async function initEmpty(saleId: number): Promise<void> {
    await register(saleId)
    if (shards === 1) await scripts.initSale(saleKeys(saleId), initArgs(saleId, "empty", emptySnapshot()))
    else await Promise.all(parts(saleId).map((part) => scripts.initSale(saleKeys(part), initArgs(saleId, "empty-shard", emptySnapshot(), new Map()))))
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
      if (shards > 1) return rebuildShards(saleId)
      let snapshot: SaleSnapshot
      try {
        await ledger.drainSale([String(saleId)])
        await Bun.sleep(ledger.commitWaitMs + commitWaitMarginMs)
      } catch (error) {
        throw unreachable(saleId, error)
      }
      // Rebuilt by another instance meanwhile: done. Were it lost again later, a read from before would be too old.
      if ((await missingParts(saleId)).length === 0) return
      try {
        snapshot = await loadSale(sql, saleId, estimatedNow())
      } catch (error) {
        throw unreachable(saleId, error)
      }
      const done = await scripts.initSale(saleKeys(saleId), initArgs(saleId, "rebuild", snapshot))
      if (done === 1) onRebuild(saleId)
      if (done === 1) log(`sale ${saleId}: rebuilt from PostgreSQL (${snapshot.sold.length} sold, ${snapshot.holds.length} live holds)`)
    })().finally(() => rebuilding.delete(saleId))
    rebuilding.set(saleId, started)
    return started
  }

  /**
   * Rebuilds the lost shards of a split sale (redis/shards.ts). A lost shard's items come from PostgreSQL,
   * as a whole sale's do. Its users' counts come from every item of the sale: from the shards Redis still
   * has (newer than PostgreSQL, and with the tentative holds still being settled, whose slots the lost
   * shard may have taken) and from PostgreSQL for the lost ones. Which shards are lost is read last, with
   * their items, in one atomic read per shard: a shard lost or rebuilt while PostgreSQL was read counts
   * as it is now.
   */
  async function rebuildShards(saleId: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if ((await rebuildShardsOnce(saleId)) === "done") return
      // A shard was lost after PostgreSQL was read: what that read has of it may be older than its loss.
      if (attempt === 2) throw new UnavailableError(`sale ${saleId}: its shards keep being lost while it is rebuilt; try again`, 2)
    }
  }

  /**
   * One pass of rebuildShards. Which shards are missing is taken just before PostgreSQL is read; a shard
   * lost after that ("again") sends the rebuild round once more.
   */
  async function rebuildShardsOnce(saleId: number): Promise<"done" | "again"> {
    if ((await missingParts(saleId)).length === 0) return "done"
    let snapshot: SaleSnapshot
    let counters: Awaited<ReturnType<typeof loadShardCounters>>
    try {
      await ledger.drainSale(parts(saleId))
      await Bun.sleep(ledger.commitWaitMs + commitWaitMarginMs)
    } catch (error) {
      throw unreachable(saleId, error)
    }
    const missingBefore = new Set(await missingParts(saleId))
    if (missingBefore.size === 0) return "done"
    try {
      ;[snapshot, counters] = await Promise.all([loadSale(sql, saleId, estimatedNow()), loadShardCounters(sql, saleId, shards, saleItems, codeAlphabet)])
    } catch (error) {
      throw unreachable(saleId, error)
    }
    const all = parts(saleId)
    const states = await Promise.all(all.map((part) => (redis.eval(itemsIfReady, 2, saleKeys(part)[0]!, statsKey(part)) as Promise<string[] | null>).catch(unavailable)))
    const lost = new Set(states.flatMap((state, k) => (state === null ? [k] : [])))
    if (lost.size === 0) return "done"
    if ([...lost].some((k) => !missingBefore.has(all[k]!))) return "again"
    const counts = new Map<string, { n: number; listed: string }>()
    const count = (user: string, listed?: string) => {
      const c = counts.get(user) ?? { n: 0, listed: "" }
      c.n += 1
      if (listed) c.listed += `|${listed}`
      counts.set(user, c)
    }
    const items = new Map<number, SaleSnapshot>([...lost].map((k) => [k, { ...emptySnapshot(), ...counters[k]! }]))
    const sold = new Set<number>()
    for (const s of snapshot.sold) {
      const k = itemShard(s.itemId, shards, saleItems)
      if (!lost.has(k)) continue
      items.get(k)!.sold.push(s)
      sold.add(s.itemId)
      count(s.userId)
    }
    // As init_sale.lua keeps them: a sold item stays sold, and of two holds of one item the later (holds come by expiry).
    const lastHold = new Map<number, SaleSnapshot["holds"][number]>()
    for (const h of snapshot.holds) if (lost.has(itemShard(h.itemId, shards, saleItems)) && !sold.has(h.itemId)) lastHold.set(h.itemId, h)
    for (const h of snapshot.holds) {
      if (lastHold.get(h.itemId) !== h) continue
      items.get(itemShard(h.itemId, shards, saleItems))!.holds.push(h)
      count(h.userId, `${h.code}:${h.at}`)
    }
    for (const state of states) {
      // HGETALL's reply: field, value, field, value ...
      for (let i = 1; state && i < state.length; i += 2) {
        const bought = /^s\|([^|]+)\|/.exec(state[i]!)
        const held = /^[ht]\|(\d+)\|([^|]+)\|(.+)$/.exec(state[i]!)
        if (bought) count(bought[1]!)
        else if (held) count(held[2]!, `${held[3]}:${held[1]}`)
      }
    }
    let rebuilt = 0
    for (const k of lost) {
      const users = new Map<string, string>()
      for (const [user, c] of counts) if (userShard(user, shards) === k) users.set(user, `${c.n}${c.listed}`)
      const done = await scripts.initSale(saleKeys(parts(saleId)[k]!), initArgs(saleId, "rebuild-shard", items.get(k)!, users))
      if (done === 1) rebuilt++
    }
    if (rebuilt > 0) {
      onRebuild(saleId)
      log(`sale ${saleId}: rebuilt ${rebuilt} of its ${shards} shards from PostgreSQL and the other shards (${snapshot.sold.length} sold, ${snapshot.holds.length} live holds kept)`)
    }
    return "done"
  }

  function unreachable(saleId: number, error: unknown): UnavailableError {
    return new UnavailableError(`sale ${saleId} must be rebuilt from PostgreSQL, which is unreachable: ${(error as Error).message}`, 2)
  }

  /** Makes sure the current and next sale are initialised, rebuilding from PostgreSQL if Redis lost them. */
  async function prepare(): Promise<void> {
    if (Date.now() - lastClockSync > 5000) await syncClock()
    const saleId = currentSale()
    if ((await missingParts(saleId)).length > 0) await rebuild(saleId)
    await prepareNext()
  }

  /** Initialises the sale after the current one, empty, before it starts: a sale boundary never needs PostgreSQL. */
  async function prepareNext(): Promise<void> {
    const next = currentSale() + 1
    if ((await missingParts(next)).length > 0) await initEmpty(next)
  }

  /** Deletes a part's keys and stops draining its journal; only for a part whose journal is empty and whose holds are long over. */
  async function forgetPart(part: string): Promise<void> {
    await redis.srem(saleRegistryKey, part)
    await redis.del(...saleKeys(part))
  }

  /** Deletes a sale's keys (every part) and stops draining its journals. */
  async function forget(saleId: number): Promise<void> {
    for (const part of parts(saleId)) await forgetPart(part)
  }

  /** Forgets the parts of sales past retention (sale/clock.ts), once the ledger has all of their records. */
  async function prune(): Promise<void> {
    const at = estimatedNow()
    for (const part of await redis.smembers(saleRegistryKey)) {
      if (saleForgottenAtMs(saleOfPart(part), periodMs, holdMs, retentionMs) > at) continue
      if ((await redis.xlen(logKey(part))) > 0) continue
      await forgetPart(part)
    }
  }

  /** Keeps sales prepared, releases the expired holds of the current and previous sale, and prunes once a minute. */
  async function maintain(): Promise<void> {
    await prepare()
    const saleId = currentSale()
    for (const id of [saleId, saleId - 1]) await Promise.all(parts(id).map((part) => scripts.release(saleKeys(part), [nowArg(), id, periodMs])))
    // A prune that fails is tried again on the next round, so its error stays visible until it passes.
    if (Date.now() - lastPrune > 60_000) {
      await prune()
      lastPrune = Date.now()
    }
  }

  /** Makes every instance rebuild this sale from PostgreSQL: Redis and the store disagree about it. */
  async function resync(saleId: number): Promise<void> {
    log(`sale ${saleId}: Redis and PostgreSQL disagree; rebuilding it from PostgreSQL`)
    // One command per part: on a cluster the shards' keys are on different slots.
    await Promise.all(parts(saleId).map((part) => redis.del(statsKey(part))))
  }

  return { nowArg, estimatedNow, currentSale, syncClock, missingParts, rebuild, resync, prepare, prepareNext, forget, maintain }
}

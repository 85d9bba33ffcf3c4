/**
 * A sale's life in Redis: the clock that says what time it is on the node that decides, initialising the next
 * sale before it starts, rebuilding a sale from PostgreSQL when Redis lost it (or holds an earlier version's
 * layout), and forgetting sales past retention. Which sales exist, and their settings, come from the book
 * (redis/book.ts), not from arithmetic on ids.
 */
import type { RedisClient } from "./connect"
import type { Sql } from "postgres"
import { loadSale, loadShardCounters } from "../postgres/store"
import { UnavailableError } from "../sale/engine"
import { emptySnapshot, type SaleSnapshot } from "../sale/records"
import { closesAt, purchasableUntil, type Sale } from "../sale/sales"
import type { LedgerWriter } from "./ledger"
import { codeAlphabet } from "../sale/codes"
import type { Book } from "./book"
import { itemShard, layoutVersion, logKey, partsOf, saleKeys, saleOfPart, saleRegistryKey, statsKey, userShard } from "./keys"
import { codeRecord, specOf, type InitArgs, type KeptUnit, type Scripts } from "./scripts"

export type LifecycleOptions = {
  redis: RedisClient
  sql: Sql
  scripts: Scripts
  ledger: LedgerWriter
  book: Book
  retentionMs: number
  /** How many shards a sale is split into (redis/shards.ts); 1: a sale is one part. */
  shards: number
  /** Decide at this time instead of Redis TIME (tests only). */
  now?: () => number
  log: (message: string) => void
  /** Called once per rebuild that initialised the sale (or some of its shards). */
  onRebuild?: (saleId: number) => void
}

export type Lifecycle = ReturnType<typeof createLifecycle>

/** Beyond the commit wait, for an answer already decided but still on its way out of another instance. */
const commitWaitMarginMs = 100

/** The arguments of init_sale.lua for one part of a sale: its settings and items, and what the store kept of it. */
export function initArgs(sale: Sale, shards: number, shard: number, mode: "empty" | "rebuild", snapshot: SaleSnapshot, counters = snapshot, users?: Map<string, string>): InitArgs {
  const { items } = sale
  const settings = `${sale.startsAt}|${closesAt(sale)}|${sale.paused ? 1 : 0}|${sale.userLimit}|${sale.holdMs}|${sale.rev}`
  // The part's items are those at positions shard, shard + shards, ...: item ix of the part is at ix * shards + shard.
  const avail = Buffer.alloc(Math.max(0, Math.ceil((items.size - shard) / shards)) * 4)
  let units = 0
  for (let p = shard, ix = 0; p < items.size; p += shards, ix++) {
    const stock = items.uniform?.stock ?? items.at(p).stock
    avail.writeUInt32BE(stock, ix * 4)
    units += stock
  }
  const mine = (itemId: number) => shards === 1 || itemShard(items.position(itemId), shards) === shard
  const kept = (k: SaleSnapshot["sold"][number]): KeptUnit => ({ ...k, spec: specOf(items, k.itemId, shards) })
  return {
    mode,
    settings,
    avail,
    units,
    uniform: items.uniform ? `${items.size}|${items.uniform.stock}|${items.uniform.perUser}` : "0|0|0",
    split: `${shards}|${shard}`,
    counters: [counters.checkouts.accepted, counters.checkouts.rejected, counters.purchases.accepted, counters.purchases.rejected],
    sold: snapshot.sold.filter((s) => mine(s.itemId)).map(kept),
    holds: snapshot.holds.filter((h) => mine(h.itemId)).map(kept),
    users,
  }
}

export function createLifecycle({ redis, sql, scripts, ledger, book, retentionMs, shards, now, log, onRebuild = () => {} }: LifecycleOptions) {
  const parts = (saleId: number) => partsOf(saleId, shards)
  const rebuilding = new Map<number, Promise<void>>()
  let clockOffsetMs = 0
  let lastClockSync = 0
  let lastPrune = 0

  /** The now_ms argument of every script: '' lets the script read Redis TIME. */
  const nowArg = () => (now ? String(now()) : "")
  /** Our best guess of Redis TIME; the scripts say when it is wrong at a boundary. */
  const estimatedNow = () => (now ? now() : Date.now() + clockOffsetMs)

  async function syncClock(): Promise<void> {
    if (now) return
    const before = Date.now()
    // The clock of the node that decides the current sale (or the next one, or any).
    const schedule = book.schedule()
    const sale = schedule.current(estimatedNow()) ?? schedule.next(estimatedNow())
    const redisNow = await scripts.clock(saleKeys(parts(sale?.id ?? 0)[0]!))
    const after = Date.now()
    clockOffsetMs = Math.round(redisNow - (before + after) / 2)
    lastClockSync = after
  }

  const register = (saleId: number) => redis.sadd(saleRegistryKey, ...parts(saleId))
  /** The parts of a sale that are not initialised with this version's layout. */
  const missingParts = async (saleId: number) => {
    const all = parts(saleId)
    const versions = await Promise.all(all.map((part) => redis.hget(statsKey(part), "v")))
    return all.filter((_, i) => versions[i] !== layoutVersion)
  }

  /** Initialises a sale that has not started yet: nothing can have happened in it, so PostgreSQL is not needed. */
  async function initEmpty(sale: Sale): Promise<void> {
    await register(sale.id)
    await Promise.all(parts(sale.id).map((part, k) => scripts.initSale(saleKeys(part), nowArg(), sale.id, initArgs(sale, shards, k, "empty", emptySnapshot(), emptySnapshot(), shards > 1 ? new Map() : undefined))))
  }

  /**
   * Rebuilds a sale from PostgreSQL; concurrent callers share one rebuild. First what the journal still
   * holds goes into PostgreSQL, then the rebuild waits out the longest any instance waits for a commit
   * before answering: a success answered by then is committed, so the rebuilt sale has it.
   */
  function rebuild(sale: Sale): Promise<void> {
    const running = rebuilding.get(sale.id)
    if (running) return running
    const started = (async () => {
      await register(sale.id)
      if (shards > 1) return rebuildShards(sale)
      let snapshot: SaleSnapshot
      try {
        await ledger.drainSale([String(sale.id)])
        await Bun.sleep(ledger.commitWaitMs + commitWaitMarginMs)
      } catch (error) {
        throw unreachable(sale.id, error)
      }
      // Rebuilt by another instance meanwhile: done. Were it lost again later, a read from before would be too old.
      if ((await missingParts(sale.id)).length === 0) return
      try {
        snapshot = await loadSale(sql, sale.id, estimatedNow())
      } catch (error) {
        throw unreachable(sale.id, error)
      }
      const done = await scripts.initSale(saleKeys(sale.id), nowArg(), sale.id, initArgs(sale, 1, 0, "rebuild", snapshot))
      if (done === 1) onRebuild(sale.id)
      if (done === 1) log(`sale ${sale.id}: rebuilt from PostgreSQL (${snapshot.sold.length} units sold, ${snapshot.holds.length} live holds)`)
    })().finally(() => rebuilding.delete(sale.id))
    rebuilding.set(sale.id, started)
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
  async function rebuildShards(sale: Sale): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if ((await rebuildShardsOnce(sale)) === "done") return
      // A shard was lost after PostgreSQL was read: what that read has of it may be older than its loss.
      if (attempt === 2) throw new UnavailableError(`sale ${sale.id}: its shards keep being lost while it is rebuilt; try again`, 2)
    }
  }

  /**
   * One pass of rebuildShards. Which shards are missing is taken just before PostgreSQL is read; a shard
   * lost after that ("again") sends the rebuild round once more.
   */
  async function rebuildShardsOnce(sale: Sale): Promise<"done" | "again"> {
    const saleId = sale.id
    if ((await missingParts(saleId)).length === 0) return "done"
    const shardOf = (itemId: number) => itemShard(sale.items.position(itemId), shards)
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
      ;[snapshot, counters] = await Promise.all([loadSale(sql, saleId, estimatedNow()), loadShardCounters(sql, saleId, shards, shardOf, codeAlphabet)])
    } catch (error) {
      throw unreachable(saleId, error)
    }
    const all = parts(saleId)
    const states = await Promise.all(all.map((part) => scripts.itemsIfReady(saleKeys(part))))
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
    // As init_sale.lua keeps them: a sold unit stays sold, and of two holds of one unit the later (holds come by expiry).
    const soldUnits = new Set<string>()
    for (const s of snapshot.sold) {
      if (!lost.has(shardOf(s.itemId))) continue
      soldUnits.add(`${s.itemId}:${s.unit}`)
      count(s.userId)
    }
    const lastHold = new Map<string, SaleSnapshot["holds"][number]>()
    for (const h of snapshot.holds) if (lost.has(shardOf(h.itemId)) && !soldUnits.has(`${h.itemId}:${h.unit}`)) lastHold.set(`${h.itemId}:${h.unit}`, h)
    for (const h of lastHold.values()) count(h.userId, `${h.code}:${h.at}`)
    for (const state of states) {
      for (const [code, record] of state ?? []) {
        const r = codeRecord(record)
        if (r?.kind === "p") count(r.userId)
        else if (r) count(r.userId, `${code}:${r.at}`)
      }
    }
    let rebuilt = 0
    for (const k of lost) {
      const users = new Map<string, string>()
      for (const [user, c] of counts) if (userShard(user, shards) === k) users.set(user, `${c.n}${c.listed}`)
      const done = await scripts.initSale(saleKeys(all[k]!), nowArg(), saleId, initArgs(sale, shards, k, "rebuild", snapshot, { ...emptySnapshot(), ...counters[k]! }, users))
      if (done === 1) rebuilt++
    }
    if (rebuilt > 0) {
      onRebuild(saleId)
      log(`sale ${saleId}: rebuilt ${rebuilt} of its ${shards} shards from PostgreSQL and the other shards (${snapshot.sold.length} units sold, ${snapshot.holds.length} live holds kept)`)
    }
    return "done"
  }

  function unreachable(saleId: number, error: unknown): UnavailableError {
    return new UnavailableError(`sale ${saleId} must be rebuilt from its journal and PostgreSQL, and they cannot be read now: ${(error as Error).message}`, 2)
  }

  /** Makes sure the open sale and the next one are initialised, rebuilding from PostgreSQL if Redis lost them. */
  async function prepare(): Promise<void> {
    if (Date.now() - lastClockSync > 5000) await syncClock()
    const current = book.schedule().current(estimatedNow())
    if (current && (await missingParts(current.id)).length > 0) await rebuild(current)
    await prepareNext()
  }

  /** Initialises the sale after the open one, empty, before it starts: a sale boundary never needs PostgreSQL. */
  async function prepareNext(): Promise<void> {
    const next = book.schedule().next(estimatedNow())
    if (next && (await missingParts(next.id)).length > 0) await initEmpty(next)
  }

  /** Deletes a part's keys and stops draining its journal; only for a part whose journal is empty and whose holds are long over. */
  async function forgetPart(part: string): Promise<void> {
    await redis.srem(saleRegistryKey, part)
    await redis.del(...saleKeys(part), statsKey(part))
  }

  /** Deletes a sale's keys (every part) and stops draining its journals. */
  async function forget(saleId: number): Promise<void> {
    for (const part of parts(saleId)) await forgetPart(part)
  }

  /**
   * Forgets the parts of sales past retention, once the ledger has all of their records. A sale is past
   * retention a day after its last hold could be bought; one the book does not know (deleted before it opened)
   * has no holds. A sale that is scheduled or open is never touched.
   */
  async function prune(): Promise<void> {
    const at = estimatedNow()
    const schedule = book.schedule()
    for (const part of await redis.smembers(saleRegistryKey)) {
      const sale = schedule.get(saleOfPart(part))
      if (sale && (at < closesAt(sale) || purchasableUntil(sale) + retentionMs > at)) continue
      if ((await redis.xlen(logKey(part))) > 0) continue
      await forgetPart(part)
    }
  }

  /** Keeps sales prepared, releases the expired holds of the sales whose holds may be live, and prunes once a minute. */
  async function maintain(): Promise<void> {
    await prepare()
    const at = estimatedNow()
    const live = new Set<number>()
    for (const sale of book.recent(at)) live.add(sale.id)
    for (const id of live) await Promise.all(parts(id).map((part) => scripts.release(saleKeys(part), nowArg())))
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

  return { nowArg, estimatedNow, syncClock, missingParts, rebuild, resync, prepare, prepareNext, forget, maintain }
}

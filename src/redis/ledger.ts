/**
 * The ledger: drains every sale's journal (redis/journal.ts) into PostgreSQL.
 *
 * It reads the journals through a consumer group, writes a batch in one transaction
 * (idempotently: each record is keyed by its entry id), and only then acknowledges
 * and deletes the entries. A crash at any point leaves the entries pending, and they
 * are written again by this process or claimed by another. So a journal's length is
 * exactly the backlog not yet in PostgreSQL.
 */
import type Redis from "ioredis"
import type { Sql } from "postgres"
import { writeRecords } from "../postgres/store"
import type { DecisionRecord } from "../sale/records"
import { journalBacklog, recordOf, type Backlog, type StreamEntry } from "./journal"
import { ledgerGroup, logKey, saleRegistryKey } from "./keys"

type Entry = { key: string; id: string; record: DecisionRecord | undefined }
type StreamReply = [string, StreamEntry[]][] | null

export type LedgerWriterOptions = {
  redis: Redis
  sql: Sql
  /** This process's name in the consumer group. */
  consumer: string
  /** Entries read from one stream per round. */
  batchSize?: number
  /** Entries pending this long in another consumer are taken over (its process is presumed dead). */
  claimIdleMs?: number
  log?: (message: string) => void
}

/** Creates the ledger's consumer group on a sale's stream (and the stream), from its first entry; already there is fine. */
export async function ensureLedgerGroup(redis: Pick<Redis, "xgroup">, saleId: number): Promise<void> {
  await redis.xgroup("CREATE", logKey(saleId), ledgerGroup, "0", "MKSTREAM").catch((error: Error) => {
    if (!error.message.includes("BUSYGROUP")) throw error
  })
}

export type LedgerWriter = {
  start(): void
  /** Starts draining this sale's stream now, rather than at the next read of the sales set. */
  track(saleId: number): void
  /** Stops draining this sale's stream (its keys are gone). */
  untrack(saleId: number): void
  /** Stops reading new entries after writing everything already in the streams (bounded by timeoutMs). */
  stop(timeoutMs?: number): Promise<void>
  backlog(): Promise<Backlog>
  /** Whether the last write to PostgreSQL (or the last attempt) succeeded, and its error if not. */
  postgres(): { up: boolean; error?: string }
}

const idleMs = 10
const claimEveryMs = 1000
const salesRefreshMs = 1000

export function createLedgerWriter(options: LedgerWriterOptions): LedgerWriter {
  const { redis, sql, consumer, batchSize = 2000, claimIdleMs = 5000, log = console.log } = options
  let running = false
  let loop: Promise<void> = Promise.resolve()
  let pendingFirst = true
  let lastClaim = 0
  let pg: { up: boolean; error?: string } = { up: true }
  const grouped = new Set<number>()

  let sales: number[] = []
  let salesReadAt = 0

  /** The sales whose streams to drain, re-read once a second (a new sale is registered well before it starts). */
  async function activeSales(): Promise<number[]> {
    if (Date.now() - salesReadAt < salesRefreshMs) return sales
    sales = (await redis.smembers(saleRegistryKey)).map(Number)
    salesReadAt = Date.now()
    for (const saleId of sales) {
      if (grouped.has(saleId)) continue
      await ensureLedgerGroup(redis, saleId)
      grouped.add(saleId)
    }
    return sales
  }

  async function read(sales: number[], from: ">" | "0"): Promise<Entry[]> {
    const pipeline = redis.pipeline()
    for (const saleId of sales) pipeline.xreadgroup("GROUP", ledgerGroup, consumer, "COUNT", batchSize, "STREAMS", logKey(saleId), from)
    const replies = (await pipeline.exec()) ?? []
    const entries: Entry[] = []
    replies.forEach(([error, reply], index) => {
      if (error) {
        grouped.delete(sales[index]!)
        salesReadAt = 0
        throw error
      }
      for (const [key, items] of (reply as StreamReply) ?? []) {
        for (const item of items) entries.push({ key, id: item[0], record: recordOf(sales[index]!, item) })
      }
    })
    return entries
  }

  async function claim(sales: number[]): Promise<Entry[]> {
    const entries: Entry[] = []
    for (const saleId of sales) {
      const key = logKey(saleId)
      const [, items] = (await redis.xautoclaim(key, ledgerGroup, consumer, claimIdleMs, "0-0", "COUNT", batchSize)) as [string, StreamEntry[]]
      for (const item of items) entries.push({ key, id: item[0], record: recordOf(saleId, item) })
    }
    if (entries.length > 0) log(`ledger: took over ${entries.length} entries left pending by a stopped instance`)
    return entries
  }

  async function ack(entries: Entry[]): Promise<void> {
    const byKey = new Map<string, string[]>()
    for (const { key, id } of entries) {
      const ids = byKey.get(key)
      if (ids) ids.push(id)
      else byKey.set(key, [id])
    }
    await Promise.all([...byKey].map(([key, ids]) => redis.multi().xack(key, ledgerGroup, ...ids).xdel(key, ...ids).exec()))
  }

  async function writeToPostgres(entries: Entry[]): Promise<void> {
    try {
      // An entry deleted before it was acknowledged has no record: acknowledge it, write nothing.
      await writeRecords(sql, entries.flatMap((e) => (e.record ? [e.record] : [])))
      if (!pg.up) log("ledger: PostgreSQL is back, draining the backlog")
      pg = { up: true }
    } catch (error) {
      if (pg.up) log(`ledger: cannot write to PostgreSQL (${(error as Error).message}); the sale goes on and the backlog waits in Redis`)
      pg = { up: false, error: (error as Error).message }
      throw error
    }
  }

  /** One round: own pending entries first (after a failure), then new ones, then entries abandoned by dead instances. */
  async function round(): Promise<number> {
    const sales = await activeSales()
    let entries: Entry[] = []
    if (pendingFirst) {
      entries = await read(sales, "0")
      pendingFirst = entries.length > 0
    }
    if (entries.length === 0) entries = await read(sales, ">")
    if (entries.length === 0 && Date.now() - lastClaim > claimEveryMs) {
      lastClaim = Date.now()
      entries = await claim(sales)
    }
    if (entries.length === 0) return 0
    await writeToPostgres(entries)
    await ack(entries)
    return entries.length
  }

  async function run(): Promise<void> {
    let backoff = 50
    while (running) {
      try {
        if ((await round()) === 0) await Bun.sleep(idleMs)
        backoff = 50
      } catch {
        pendingFirst = true
        await Bun.sleep(backoff)
        backoff = Math.min(backoff * 2, 1000)
      }
    }
  }

  return {
    track(saleId) {
      if (!sales.includes(saleId)) sales = [...sales, saleId]
    },
    untrack(saleId) {
      sales = sales.filter((s) => s !== saleId)
      grouped.delete(saleId)
    },
    start() {
      if (running) return
      running = true
      loop = run()
    },
    async stop(timeoutMs = 10_000) {
      running = false
      await loop
      const deadline = Date.now() + timeoutMs
      pendingFirst = true
      while (Date.now() < deadline) {
        try {
          if ((await round()) === 0 && !pendingFirst) return
        } catch {
          pendingFirst = true
          await Bun.sleep(100)
        }
      }
      log("ledger: stopped with entries still in Redis; the next instance will write them")
    },
    backlog: () => journalBacklog(redis),
    postgres: () => pg,
  }
}

/**
 * The batched writer: drains every sale's log stream into PostgreSQL.
 *
 * The Lua script that decides also appends the outcome to the sale's stream, so
 * a decision and its record are one atomic step in Redis. This writer reads the
 * streams through a consumer group, inserts a batch in one transaction
 * (idempotently: each row is keyed by its stream entry id), and only then
 * acknowledges and deletes the entries. A crash at any point leaves the entries
 * pending, and they are written again by this process or claimed by another.
 * So a stream's length is exactly the backlog not yet in PostgreSQL.
 */
import type Redis from "ioredis"
import type { Sql } from "postgres"
import { ensureSchema } from "./schema"
import { ledgerGroup, logKey, salesRegistryKey } from "../store/keys"

type Entry = { key: string; saleId: number; id: string; fields: string[] }
type StreamReply = [string, [string, string[]][]][] | null

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

export type Backlog = { entries: number; oldestAgeMs: number }

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
    sales = (await redis.smembers(salesRegistryKey)).map(Number)
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
        for (const [id, fields] of items) entries.push({ key, saleId: sales[index]!, id, fields: fields ?? [] })
      }
    })
    return entries
  }

  async function claim(sales: number[]): Promise<Entry[]> {
    const entries: Entry[] = []
    for (const saleId of sales) {
      const key = logKey(saleId)
      const [, items] = (await redis.xautoclaim(key, ledgerGroup, consumer, claimIdleMs, "0-0", "COUNT", batchSize)) as [string, [string, string[]][]]
      for (const [id, fields] of items) entries.push({ key, saleId, id, fields: fields ?? [] })
    }
    if (entries.length > 0) log(`ledger: took over ${entries.length} entries left pending by a stopped instance`)
    return entries
  }

  async function write(entries: Entry[]): Promise<void> {
    const c = { sale: [] as number[], event: [] as string[], user: [] as string[], item: [] as string[], outcome: [] as string[], code: [] as string[], expires: [] as string[], at: [] as string[] }
    const p = { sale: [] as number[], event: [] as string[], code: [] as string[], outcome: [] as string[], user: [] as string[], item: [] as string[], at: [] as string[] }
    for (const { saleId, id, fields } of entries) {
      const f: Record<string, string> = {}
      for (let i = 0; i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!
      // An entry deleted before its pending record was acknowledged has no fields: acknowledge it, write nothing.
      if (f.e !== "c" && f.e !== "p") continue
      const rows = f.e === "c" ? c : p
      rows.sale.push(saleId)
      rows.event.push(id)
      rows.user.push(f.u!)
      rows.item.push(f.i!)
      rows.outcome.push(f.o!)
      rows.code.push(f.k!)
      rows.at.push(f.t!)
      if (f.e === "c") c.expires.push(f.x!)
    }
    await sql.begin(async (tx) => {
      if (c.event.length > 0) {
        await tx`insert into checkout_attempts (sale_id, event_id, user_id, item_id, outcome, code, expires_at, created_at)
          select s, e, u, i, o, nullif(k, ''), to_timestamp(nullif(x, '')::bigint / 1000.0), to_timestamp(t::bigint / 1000.0)
          from unnest(${c.sale}::bigint[], ${c.event}::text[], ${c.user}::text[], ${c.item}::int[], ${c.outcome}::text[], ${c.code}::text[], ${c.expires}::text[], ${c.at}::text[]) as r(s, e, u, i, o, k, x, t)
          on conflict do nothing`
      }
      if (p.event.length > 0) {
        await tx`insert into purchase_attempts (sale_id, event_id, code, outcome, user_id, item_id, created_at)
          select s, e, k, o, nullif(u, ''), nullif(i, '')::int, to_timestamp(t::bigint / 1000.0)
          from unnest(${p.sale}::bigint[], ${p.event}::text[], ${p.code}::text[], ${p.outcome}::text[], ${p.user}::text[], ${p.item}::text[], ${p.at}::text[]) as r(s, e, k, o, u, i, t)
          on conflict do nothing`
        await tx`insert into purchases (sale_id, item_id, user_id, code, purchased_at)
          select s, i::int, u, k, to_timestamp(t::bigint / 1000.0)
          from unnest(${p.sale}::bigint[], ${p.code}::text[], ${p.outcome}::text[], ${p.user}::text[], ${p.item}::text[], ${p.at}::text[]) as r(s, k, o, u, i, t)
          where o = 'purchased'
          on conflict do nothing`
      }
    })
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
      await ensureSchema(sql)
      await write(entries)
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
    async backlog() {
      const sales = (await redis.smembers(salesRegistryKey)).map(Number)
      const pipeline = redis.pipeline()
      for (const saleId of sales) pipeline.xlen(logKey(saleId)).xrange(logKey(saleId), "-", "+", "COUNT", 1)
      const replies = (await pipeline.exec()) ?? []
      let entries = 0
      let oldest = Infinity
      for (let i = 0; i < replies.length; i += 2) {
        entries += Number(replies[i]![1] ?? 0)
        const first = replies[i + 1]![1] as [string, string[]][] | null
        if (first?.[0]) oldest = Math.min(oldest, Number(first[0][0].split("-")[0]))
      }
      return { entries, oldestAgeMs: entries > 0 && oldest !== Infinity ? Math.max(0, Date.now() - oldest) : 0 }
    },
    postgres: () => pg,
  }
}

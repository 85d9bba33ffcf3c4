/**
 * The ledger: gets every decision into PostgreSQL, and tells the engine when a success may be answered.
 *
 * Group commit from memory: the engine hands over the records of each script call together with the
 * id of the journal entry the script wrote (redis/journal.ts). Whatever is queued while a commit is in
 * flight goes into the next one, so many decisions share one commit. After the commit the entries are
 * deleted from the journal. A success is answered once its commit is done, or after `commitWaitMs`
 * if PostgreSQL is slow or down: then it rests on the journal in Redis.
 *
 * Recovery from the journal: entries older than `claimAfterMs` were never committed by the instance
 * that wrote them (it died, or PostgreSQL was down). Every instance looks for such entries once a
 * second and writes them; writing a record twice changes nothing, so a race between instances is
 * harmless, and a short per-sale lock keeps them from doing the same work.
 */
import type { RedisClient } from "./connect"
import type { Sql } from "postgres"
import { ping, writeRecords } from "../postgres/store"
import { metrics as processMetrics, type EngineMetrics } from "../metrics"
import type { DecisionRecord } from "../sale/records"
import { journalBacklog, recordsOf, type Backlog, type StreamEntry } from "./journal"
import { drainLockKey, logKey, saleOfPart, saleRegistryKey, shardOfPart } from "./keys"

export type LedgerOptions = {
  redis: RedisClient
  sql: Sql
  /** How long a success waits for its commit before it is answered from the journal. */
  commitWaitMs?: number
  /** A commit that takes longer counts as failed: PostgreSQL is down for the engine until a write succeeds. */
  commitTimeoutMs?: number
  /** Journal entries this old belong to no live commit and are recovered from the journal. */
  claimAfterMs?: number
  log?: (message: string) => void
  metrics?: EngineMetrics
}

/** What became of a script call's records: in PostgreSQL, or (not yet) only in the journal. */
export type Kept = { committed: boolean; refused: Set<string> }

export type LedgerWriter = {
  /** Queues the records of the script call that wrote entry `entryId` of a part's journal (redis/keys.ts); resolves on commit, or after commitWaitMs at the latest. */
  keep(part: string, entryId: string, records: DecisionRecord[]): Promise<Kept>
  /** Writes every entry of these parts' journals to PostgreSQL and deletes them (before a rebuild reads PostgreSQL). */
  drainSale(parts: string[]): Promise<void>
  readonly commitWaitMs: number
  start(): void
  /** Commits what is queued, bounded by timeoutMs; what is left stays in the journal. */
  stop(timeoutMs?: number): Promise<void>
  /** Resolves once every record queued so far is committed (or its commit failed). */
  flush(): Promise<void>
  backlog(): Promise<Backlog>
  /** Whether the last write to PostgreSQL succeeded, and its error if not. */
  postgres(): { up: boolean; error?: string }
  /** Why the last round of journal recovery failed, if it did. */
  recoveryError(): string | undefined
}

type Queued = { part: string; entryId: string; records: DecisionRecord[]; settle: (kept: Kept) => void }

const drainEveryMs = 1000
const drainBatch = 500
const notCommitted: Kept = { committed: false, refused: new Set() }

export function createLedgerWriter(options: LedgerOptions): LedgerWriter {
  const { redis, sql, commitWaitMs = 50, commitTimeoutMs = 5000, claimAfterMs = 5000, log = console.log, metrics = processMetrics } = options
  let queue: Queued[] = []
  let committing: Promise<void> | undefined
  let pg: { up: boolean; error?: string } = { up: true }
  let timer: ReturnType<typeof setInterval> | undefined
  let draining = false
  let recoveryError: string | undefined
  const lockToken = crypto.randomUUID()

  function wentDown(error: unknown): void {
    const message = (error as Error)?.message ?? String(error)
    if (pg.up) log(`ledger: cannot write to PostgreSQL (${message}); the sale goes on and the journal keeps every decision in Redis`)
    pg = { up: false, error: message }
  }

  function cameUp(): void {
    if (!pg.up) log("ledger: PostgreSQL is back, draining the journal")
    pg = { up: true }
  }

  /** Writes records, failing after commitTimeoutMs (a stalled PostgreSQL must not hold the engine). */
  async function write(records: DecisionRecord[]): Promise<Set<string>> {
    let timeout: ReturnType<typeof setTimeout> | undefined
    const stalled = new Promise<never>((_, reject) => (timeout = setTimeout(() => reject(new Error(`no commit within ${commitTimeoutMs} ms`)), commitTimeoutMs)))
    const started = performance.now()
    try {
      const refused = await Promise.race([writeRecords(sql, records), stalled])
      metrics.storeCommit.observe((performance.now() - started) / 1000, records.length)
      cameUp()
      for (const code of refused) log(`ledger: PostgreSQL refused a second sale of the item bought with code ${code}`)
      return refused
    } catch (error) {
      metrics.storeCommit.failed()
      wentDown(error)
      throw error
    } finally {
      clearTimeout(timeout)
    }
  }

  /** Deletes committed entries, one command per journal (a journal is one slot). A failure only delays them: recovery rewrites them harmlessly. */
  async function forgetEntries(entries: { part: string; entryId: string }[]): Promise<void> {
    const byPart = new Map<string, string[]>()
    for (const { part, entryId } of entries) byPart.set(part, [...(byPart.get(part) ?? []), entryId])
    await Promise.all([...byPart].map(([part, ids]) => redis.xdel(logKey(part), ...ids).catch(() => 0)))
  }

  async function commitQueued(): Promise<void> {
    while (queue.length > 0) {
      const batch = queue
      queue = []
      let kept: Kept
      try {
        kept = { committed: true, refused: await write(batch.flatMap((q) => q.records)) }
      } catch {
        kept = notCommitted
      }
      for (const q of batch) q.settle(kept)
      if (kept.committed) await forgetEntries(batch)
    }
  }

  function keep(part: string, entryId: string, records: DecisionRecord[]): Promise<Kept> {
    // While PostgreSQL is down the journal holds everything; recovery writes it once a write succeeds again.
    if (!pg.up) return Promise.resolve(notCommitted)
    return new Promise((resolve) => {
      const timeout = setTimeout(() => resolve(notCommitted), commitWaitMs)
      queue.push({ part, entryId, records, settle: (kept) => (clearTimeout(timeout), resolve(kept)) })
      committing ??= commitQueued().finally(() => (committing = undefined))
    })
  }

  /** Writes and deletes entries of one part's journal up to `end` (an entry id or "+"), a chunk at a time. */
  async function drainJournal(part: string, end: string): Promise<number> {
    let total = 0
    for (;;) {
      const entries = (await redis.xrange(logKey(part), "-", end, "COUNT", drainBatch)) as StreamEntry[]
      if (entries.length === 0) return total
      await write(entries.flatMap((entry) => recordsOf(part, entry)))
      await redis.xdel(logKey(part), ...entries.map(([id]) => id))
      total += entries.length
      if (entries.length < drainBatch) return total
    }
  }

  /** Recovers, for every sale, the entries no live commit will write. */
  async function recover(): Promise<void> {
    if (!pg.up) {
      const probe = await ping(sql, commitTimeoutMs)
      if (probe.status !== "ok") return wentDown(probe.error)
      cameUp()
    }
    const cutoff = String(Date.now() - claimAfterMs)
    for (const part of await redis.smembers(saleRegistryKey)) {
      const [oldest] = (await redis.xrange(logKey(part), "-", cutoff, "COUNT", 1)) as StreamEntry[]
      if (!oldest) continue
      if ((await redis.set(drainLockKey(part), lockToken, "PX", 2 * drainEveryMs, "NX")) !== "OK") continue
      const recovered = await drainJournal(part, cutoff)
      const shard = shardOfPart(part)
      const what = shard === undefined ? `sale ${part}` : `sale ${saleOfPart(part)} shard ${shard}`
      if (recovered > 0) log(`ledger: wrote ${recovered} journal entries of ${what} that no running instance had committed`)
    }
  }

  return {
    keep,
    commitWaitMs,
    async drainSale(parts) {
      for (const part of parts) await drainJournal(part, "+")
    },
    start() {
      timer ??= setInterval(() => {
        if (draining) return
        draining = true
        recover()
          .then(() => (recoveryError = undefined))
          .catch((error: Error) => {
            if (error.message !== recoveryError) log(`ledger: journal recovery failed: ${error.message}`)
            recoveryError = error.message
          })
          .finally(() => (draining = false))
      }, drainEveryMs)
    },
    async stop(timeoutMs = 8000) {
      clearInterval(timer)
      timer = undefined
      let deadline: ReturnType<typeof setTimeout> | undefined
      const late = new Promise<"late">((resolve) => (deadline = setTimeout(() => resolve("late"), timeoutMs)))
      const done = await Promise.race([committing ?? Promise.resolve(), late])
      clearTimeout(deadline)
      if (done === "late") log("ledger: stopped with decisions not yet in PostgreSQL; they stay in the journal for another instance or the next start")
    },
    async flush() {
      while (committing) await committing
    },
    backlog: () => journalBacklog(redis),
    postgres: () => pg,
    recoveryError: () => recoveryError,
  }
}

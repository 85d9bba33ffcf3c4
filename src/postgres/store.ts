/** What the Redis engine keeps in PostgreSQL: batches of decision records written idempotently, and a sale read back to rebuild it. */
import type { Sql } from "postgres"
import type { DecisionRecord, SaleSnapshot } from "../sale/records"
import { isoFormatter } from "../sale/clock"
import { recoveryQueries, snapshotOf } from "../sale/schema"
import { ensureSchema } from "./schema"

const recovery = recoveryQueries("postgres")

const copyColumns = {
  checkouts: "checkout_attempts (sale_id, event_id, user_id, item_id, outcome, code, unit, expires_at, created_at)",
  purchases: "purchase_attempts (sale_id, event_id, code, outcome, user_id, item_id, unit, created_at)",
  sold: "purchases (sale_id, item_id, unit, user_id, code, purchased_at)",
}
const escapes: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" }
/** A field in COPY's text format: \N for null; a backslash, tab, newline or carriage return escaped. */
const field = (value: string | number | null) => (value === null ? "\\N" : typeof value === "number" ? String(value) : /[\\\t\n\r]/.test(value) ? value.replace(/[\\\t\n\r]/g, (c) => escapes[c]!) : value)

/** Decision times and expiries as COPY reads timestamptz: a batch shares both, so each has its own remembering formatter. */
const isoAt = isoFormatter()
const isoExpiry = isoFormatter()

/** COPY's text of the records, one kind of row per table. */
function copyText(records: DecisionRecord[]): { checkouts: string; purchases: string; sold: string } {
  let checkouts = ""
  let purchases = ""
  let sold = ""
  for (const r of records) {
    const at = isoAt(r.at)
    if (r.kind === "checkout") {
      const expires = r.expiresAt === null ? "\\N" : isoExpiry(r.expiresAt)
      checkouts += `${r.saleId}\t${field(r.eventId!)}\t${field(r.userId)}\t${r.itemId}\t${r.outcome}\t${field(r.code)}\t${field(r.unit)}\t${expires}\t${at}\n`
    } else {
      purchases += `${r.saleId}\t${field(r.eventId!)}\t${field(r.code)}\t${r.outcome}\t${field(r.userId)}\t${field(r.itemId)}\t${field(r.unit)}\t${at}\n`
      if (r.outcome === "purchased") sold += `${r.saleId}\t${r.itemId}\t${r.unit ?? 1}\t${field(r.userId)}\t${field(r.code)}\t${at}\n`
    }
  }
  return { checkouts, purchases, sold }
}

/**
 * Streams rows into a table with COPY, and resolves once the connection takes statements again. It does not wait
 * for the server's word: postgres.js loses a refusal that comes after the rows are sent (a unique key), and the
 * stream then never finishes. The transaction's next statement finds out instead: it fails (the transaction is
 * aborted) when the COPY was refused.
 */
async function copyIn(tx: Sql, table: string, text: string): Promise<void> {
  if (text === "") return
  const stream = await tx.unsafe(`copy ${table} from stdin`).writable()
  const internals = stream as unknown as { _final: (done: (error?: Error | null) => void) => void; _destroy: (error: Error | null, done: (error: Error | null) => void) => void }
  // postgres.js's stream sends CopyFail when destroyed, and destroys itself once finished: by then the next COPY of
  // the transaction may have begun, and the stray CopyFail would abort it. The server's word never needs one.
  internals._destroy = (error, done) => done(error)
  // The connection takes statements again once the stream has handed it its end (CopyDone), in postgres.js's
  // final; a statement sent before that is refused (COPY_IN_PROGRESS), and postgres.js's transaction remembers it.
  const handedOver = new Promise<void>((resolve) => {
    const final = internals._final
    internals._final = (done) => {
      final.call(stream, done)
      resolve()
    }
    stream.once("close", resolve)
  })
  // When the refusal does reach the stream, it is an error event: the transaction's failure reports it.
  stream.on("error", () => {})
  stream.end(text)
  await handedOver
}

/**
 * What a refused COPY looks like to the statements after it: the key's refusal itself, or the transaction aborted.
 * Then the statements that skip what is kept take over.
 */
const refusedCopy = new Set(["23505", "25P02"])

/**
 * Writes the records in one transaction, and returns the codes of purchases PostgreSQL refused because it has
 * their unit sold under another code (kept as `item_sold` attempts, never answered as sales).
 *
 * Nearly every commit holds only rows never written before, and COPY loads them at a fraction of the server's
 * work per row that ON CONFLICT costs. When one is there already (a rebuild's drain or a recovery writing rows
 * another instance is still committing, or a unit sold twice after a Redis loss), the keys refuse the COPY,
 * nothing of it is kept, and the same records go through statements that skip what is kept: writing a record
 * again changes nothing on every commit, whichever way it went.
 */
export async function writeRecords(sql: Sql, records: DecisionRecord[]): Promise<Set<string>> {
  await ensureSchema(sql)
  if (records.length === 0) return new Set()
  const text = copyText(records)
  try {
    await sql.begin(async (tx) => {
      const copy = tx as unknown as Sql
      // Sales first: the table most likely to refuse, before the others' rows are sent.
      await copyIn(copy, copyColumns.sold, text.sold)
      await copyIn(copy, copyColumns.checkouts, text.checkouts)
      await copyIn(copy, copyColumns.purchases, text.purchases)
      // The last COPY's word, before the commit: aborted if it was refused (postgres.js 3.4 would report the
      // commit of an aborted transaction, which PostgreSQL answers with a rollback, as a success).
      await tx`select 1`
    })
    return new Set()
  } catch (error) {
    if (!refusedCopy.has((error as { code?: string }).code ?? "")) throw error
    return insertRecords(sql, records)
  }
}

/** Unix ms as text, which the inserts turn into timestamptz. */
const msText = (ms: number | null) => (ms === null ? null : String(ms))

/** The records' fields as one array per column, for insert ... select from unnest(...). */
function columnsOf<R, T extends unknown[]>(records: R[], fields: (record: R) => [...T]): { [K in keyof T]: T[K][] } {
  const columns: unknown[][] = []
  for (const record of records) fields(record).forEach((value, i) => (columns[i] ??= []).push(value))
  return columns as never
}

/**
 * The records in one transaction, by statements that skip what is kept already (ON CONFLICT DO NOTHING): a
 * record written again changes nothing, and a purchase whose unit PostgreSQL has sold under another code is
 * found through RETURNING. Its code is returned: kept as an `item_sold` attempt, never answered as a sale.
 */
async function insertRecords(sql: Sql, records: DecisionRecord[]): Promise<Set<string>> {
  const refused = new Set<string>()
  const checkouts = records.filter((r) => r.kind === "checkout")
  const purchases = records.filter((r) => r.kind === "purchase")
  const sold = purchases.filter((r) => r.outcome === "purchased")
  const [cSale, cEvent, cUser, cItem, cOutcome, cCode, cUnit, cExpires, cAt] = columnsOf(checkouts, (r) => [r.saleId, r.eventId!, r.userId, r.itemId, r.outcome, r.code, r.unit, msText(r.expiresAt), msText(r.at)])
  const [sSale, sItem, sUnit, sUser, sCode, sAt] = columnsOf(sold, (r) => [r.saleId, r.itemId, r.unit ?? 1, r.userId, r.code, msText(r.at)])
  await sql.begin(async (tx) => {
    if (checkouts.length > 0) {
      await tx`insert into checkout_attempts (sale_id, event_id, user_id, item_id, outcome, code, unit, expires_at, created_at)
        select s, e, u, i, o, k, n, to_timestamp(x::bigint / 1000.0), to_timestamp(t::bigint / 1000.0)
        from unnest(${cSale}::bigint[], ${cEvent}::text[], ${cUser}::text[], ${cItem}::int[], ${cOutcome}::text[], ${cCode}::text[], ${cUnit}::int[], ${cExpires}::text[], ${cAt}::text[]) as r(s, e, u, i, o, k, n, x, t)
        on conflict do nothing`
    }
    if (sold.length > 0) {
      const inserted = await tx`insert into purchases (sale_id, item_id, unit, user_id, code, purchased_at)
        select s, i, n, u, k, to_timestamp(t::bigint / 1000.0)
        from unnest(${sSale}::bigint[], ${sItem}::int[], ${sUnit}::int[], ${sUser}::text[], ${sCode}::text[], ${sAt}::text[]) as r(s, i, n, u, k, t)
        on conflict do nothing
        returning code`
      if (inserted.length < sold.length) {
        // Not inserted: either written before (a replay, harmless) or the item is sold under another code.
        const done = new Set(inserted.map((r) => r.code as string))
        const missing = sold.map((r) => r.code).filter((code) => !done.has(code))
        const replayed = new Set((await tx`select code from purchases where code = any(${missing}::text[])`).map((r) => r.code as string))
        for (const code of missing) if (!replayed.has(code)) refused.add(code)
      }
    }
    if (purchases.length > 0) {
      const [pSale, pEvent, pCode, pOutcome, pUser, pItem, pUnit, pAt] = columnsOf(purchases, (r) => [r.saleId, r.eventId!, r.code, refused.has(r.code) && r.outcome === "purchased" ? "item_sold" : r.outcome, r.userId, r.itemId, r.unit, msText(r.at)])
      await tx`insert into purchase_attempts (sale_id, event_id, code, outcome, user_id, item_id, unit, created_at)
        select s, e, k, o, u, i, n, to_timestamp(t::bigint / 1000.0)
        from unnest(${pSale}::bigint[], ${pEvent}::text[], ${pCode}::text[], ${pOutcome}::text[], ${pUser}::text[], ${pItem}::int[], ${pUnit}::int[], ${pAt}::text[]) as r(s, e, k, o, u, i, n, t)
        on conflict do nothing`
    }
  })
  return refused
}

/** What PostgreSQL kept of one sale, with the holds still live at `nowMs`. */
export async function loadSale(sql: Sql, saleId: number, nowMs: number): Promise<SaleSnapshot> {
  await ensureSchema(sql)
  const [checkouts, purchases, sold, holds] = await Promise.all([
    sql.unsafe(recovery.checkouts, [saleId]),
    sql.unsafe(recovery.purchases, [saleId]),
    sql.unsafe(recovery.sold, [saleId]),
    sql.unsafe(recovery.holds, [saleId, Math.floor(nowMs)]),
  ])
  return snapshotOf({ checkouts, purchases, sold, holds }, Number)
}

/** Whether PostgreSQL answers within `timeoutMs`. */
export async function ping(sql: Sql, timeoutMs = 1000): Promise<{ status: "ok" } | { status: "down"; error: string }> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<{ status: "down"; error: string }>((resolve) => (timer = setTimeout(() => resolve({ status: "down", error: `no answer within ${timeoutMs} ms` }), timeoutMs)))
  try {
    return await Promise.race([sql`select 1`.then(() => ({ status: "ok" }) as const), timeout])
  } catch (error) {
    return { status: "down", error: (error as Error).message }
  }
  finally {
    clearTimeout(timer)
  }
}

type Counters = Pick<SaleSnapshot, "checkouts" | "purchases">

/**
 * The counters of each shard of a sale split into `shards` (redis/shards.ts): a checkout counts on its item's
 * shard (`shardOfItem`; shard 0 for an item the sale does not have), a purchase on the shard its code names.
 */
export async function loadShardCounters(sql: Sql, saleId: number, shards: number, shardOfItem: (itemId: number) => number, alphabet: string): Promise<Counters[]> {
  await ensureSchema(sql)
  const accepted = "outcome in ('reserved', 'repeated')"
  const [checkouts, purchases] = await Promise.all([
    sql.unsafe(`select item_id, count(*) filter (where ${accepted}) as accepted, count(*) filter (where not ${accepted}) as rejected from checkout_attempts where sale_id = $1 group by 1`, [saleId]),
    sql.unsafe(
      `select strpos($2, substr(code, strpos(code, '.') + 1, 1)) - 1 as shard,
        count(*) filter (where outcome = 'purchased') as accepted, count(*) filter (where outcome <> 'purchased') as rejected
      from purchase_attempts where sale_id = $1 group by 1`,
      [saleId, alphabet],
    ),
  ])
  const counters: Counters[] = Array.from({ length: shards }, () => ({ checkouts: { accepted: 0, rejected: 0 }, purchases: { accepted: 0, rejected: 0 } }))
  for (const r of checkouts) {
    const c = counters[shardOfItem(Number(r.item_id))]!
    c.checkouts.accepted += Number(r.accepted)
    c.checkouts.rejected += Number(r.rejected)
  }
  for (const r of purchases) {
    const c = counters[Number(r.shard)]
    if (c) c.purchases = { accepted: Number(r.accepted), rejected: Number(r.rejected) }
  }
  return counters
}

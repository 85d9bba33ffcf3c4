/** What the Redis engine keeps in PostgreSQL: batches of decision records written idempotently, and a sale read back to rebuild it. */
import type { Sql } from "postgres"
import type { DecisionRecord, SaleSnapshot } from "../sale/records"
import { recoveryQueries, snapshotOf } from "../sale/schema"
import { ensureSchema } from "./schema"

const recovery = recoveryQueries("postgres")

/** Unix ms as text, which the inserts turn into timestamptz. */
const msText = (ms: number | null) => (ms === null ? null : String(ms))

/** The records' fields as one array per column, for insert ... select from unnest(...). */
function columnsOf<R, T extends unknown[]>(records: R[], fields: (record: R) => [...T]): { [K in keyof T]: T[K][] } {
  const columns: unknown[][] = []
  for (const record of records) fields(record).forEach((value, i) => (columns[i] ??= []).push(value))
  return columns as never
}

/**
 * Writes the records in one transaction. Each attempt is keyed by (sale_id, event_id), so writing a
 * record again changes nothing. The store itself refuses a second sale of a unit: the codes returned
 * are purchases whose unit PostgreSQL already has sold under another code; they are kept as `item_sold`
 * attempts and must not be answered as sales.
 */
export async function writeRecords(sql: Sql, records: DecisionRecord[]): Promise<Set<string>> {
  await ensureSchema(sql)
  const refused = new Set<string>()
  if (records.length === 0) return refused
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

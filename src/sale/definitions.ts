/**
 * How sale definitions and operator actions are kept: the statements both stores run (PostgreSQL and SQLite
 * differ only in placeholders and types), and the rows read back as sales. The tables are in sale/schema.ts.
 */
import type { Dialect } from "./schema"
import { firstPlannedId, listedItems, type RecurringOverride, type Sale } from "./sales"
import type { SaleItem } from "./catalog"

/** A planned sale as an operator creates it (sale/admin.ts checks it). */
export type NewSale = { name: string; startsAt: number; endsAt: number; userLimit: number; holdMs: number; items: SaleItem[] }

/** What an operator changes in a sale. `endedAt` is set by an end; `stocks` by a restock (or a lower stock). */
export type SaleChange = Partial<{ name: string; endsAt: number; userLimit: number; holdMs: number; paused: boolean; endedAt: number; stocks: { id: number; stock: number }[] }>

/** One operator action, as kept in admin_actions: never the token. */
export type Action = { at: number; action: string; saleId: number | null; details: Record<string, unknown>; client: string | null }

/** A kept action, as listed. */
export type ActionRow = Action & { id: number }

/**
 * What the store keeps of the sales changed since a revision: the planned ones (not deleted), the recurring ones
 * an operator changed, the ids of sales deleted since, and the newest revision. From revision 0: everything.
 */
export type KeptSales = { planned: Sale[]; overrides: Map<number, RecurringOverride>; deleted: number[]; rev: number }

export type SaleRow = Record<string, unknown>

/**
 * Statements with the dialect's placeholders. Times go in as Unix ms in PostgreSQL and as ISO-8601 text in SQLite
 * (which keeps them so), and come out as Unix ms text and ISO text: `toMs` in the readers below takes either.
 */
export function definitionQueries(dialect: Dialect) {
  const p = (n: number) => (dialect === "postgres" ? `$${n}` : `?${n}`)
  const t = (n: number) => (dialect === "postgres" ? `to_timestamp(${p(n)}::bigint / 1000.0)` : p(n))
  const ms = (column: string) => (dialect === "postgres" ? `(extract(epoch from ${column}) * 1000)::bigint::text` : column)
  const saleColumns = `id, kind, name, ${ms("starts_at")} as starts_at, ${ms("ends_at")} as ends_at, ${ms("ended_at")} as ended_at, paused, user_limit, hold_seconds, rev`
  return {
    /** Every sale changed since a revision (p1), deleted ones included, oldest first. */
    sales: `select ${saleColumns}, deleted_at is not null as deleted from sales where rev > ${p(1)} order by starts_at, id`,
    /** The items of the planned sales changed since a revision (p1) and not deleted. */
    itemsSince: `select i.sale_id, i.item_id, i.name, i.image, i.price, i.stock, i.per_user from sale_items i join sales s on s.id = i.sale_id
      where s.rev > ${p(1)} and s.deleted_at is null and s.kind = 'planned' order by i.sale_id, i.position`,
    sale: `select ${saleColumns} from sales where id = ${p(1)} and deleted_at is null`,
    items: `select item_id, name, image, price, stock, per_user from sale_items where sale_id = ${p(1)} order by position`,
    revision: "select coalesce(max(rev), 0) as rev from sales",
    nextId: `select coalesce(max(id), ${firstPlannedId - 1}) + 1 as id from sales where id >= ${firstPlannedId}`,
    /** Planned sales (not deleted) whose window overlaps [p1, p2), other than p3. */
    overlaps: `select id from sales where kind = 'planned' and deleted_at is null and id <> ${p(3)}
      and starts_at < ${t(2)} and ${t(1)} < (case when ended_at is not null and ended_at < ends_at then ended_at else ends_at end)`,
    insertSale: `insert into sales (id, kind, name, starts_at, ends_at, ended_at, paused, user_limit, hold_seconds, rev, created_at)
      values (${p(1)}, ${p(2)}, ${p(3)}, ${t(4)}, ${t(5)}, ${dialect === "postgres" ? `case when ${p(6)}::bigint is null then null else to_timestamp(${p(6)}::bigint / 1000.0) end` : p(6)}, ${p(7)}, ${p(8)}, ${p(9)}, ${p(10)}, ${t(11)})`,
    insertItem: `insert into sale_items (sale_id, item_id, position, name, image, price, stock, per_user) values (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)}, ${p(7)}, ${p(8)})`,
    updateSale: `update sales set name = ${p(2)}, ends_at = ${t(3)}, ended_at = ${dialect === "postgres" ? `case when ${p(4)}::bigint is null then null else to_timestamp(${p(4)}::bigint / 1000.0) end` : p(4)}, paused = ${p(5)}, user_limit = ${p(6)}, hold_seconds = ${p(7)}, rev = ${p(8)} where id = ${p(1)}`,
    updateStock: `update sale_items set stock = ${p(3)} where sale_id = ${p(1)} and item_id = ${p(2)}`,
    deleteSale: `update sales set deleted_at = ${t(2)}, rev = ${p(3)} where id = ${p(1)}`,
    insertAction: `insert into admin_actions (at, action, sale_id, details, client) values (${t(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)})`,
    /** The newest actions first, below an id (p1) and of a sale (p2, or any when null), p3 at most. */
    actions: `select id, ${ms("at")} as at, action, sale_id, details, client from admin_actions
      where id < ${p(1)} and (${p(2)}${dialect === "postgres" ? "::bigint" : ""} is null or sale_id = ${p(2)}) order by id desc limit ${p(3)}`,
  }
}

/**
 * What running a sale reads and keeps beside its decisions: releases by hand, a user's units, the orders, a
 * report's counts, audits. Placeholders and times as in definitionQueries.
 */
export function operationQueries(dialect: Dialect) {
  const p = (n: number) => (dialect === "postgres" ? `$${n}` : `?${n}`)
  const t = (n: number) => (dialect === "postgres" ? `to_timestamp(${p(n)}::bigint / 1000.0)` : p(n))
  const ms = (column: string) => (dialect === "postgres" ? `(extract(epoch from ${column}) * 1000)::bigint::text` : column)
  const notReleased = "not exists (select 1 from hold_releases r where r.sale_id = a.sale_id and r.code = a.code)"
  return {
    insertRelease: `insert into hold_releases (sale_id, code, released_at, client) values (${p(1)}, ${p(2)}, ${t(3)}, ${p(4)}) on conflict do nothing`,
    /** A user's (p2) purchases in a sale (p1). */
    userPurchases: `select item_id, unit, user_id, code, ${ms("purchased_at")} as at from purchases where sale_id = ${p(1)} and user_id = ${p(2)} order by purchased_at, item_id, unit`,
    /** A user's (p2) holds in a sale (p1) live at p3: not expired, bought or released. */
    userHolds: `select a.item_id, coalesce(a.unit, 1) as unit, a.user_id, a.code, ${ms("a.expires_at")} as at from checkout_attempts a
      where a.sale_id = ${p(1)} and a.user_id = ${p(2)} and a.outcome = 'reserved' and a.expires_at > ${t(3)}
        and not exists (select 1 from purchases s where s.code = a.code) and ${notReleased}
      order by a.expires_at`,
    /** A sale's (p1) purchases, oldest first: the orders. */
    orders: `select item_id, unit, user_id, code, ${ms("purchased_at")} as at from purchases where sale_id = ${p(1)} order by purchased_at, item_id, unit`,
    reportItems: `select item_id, count(*) as sold, ${ms("min(purchased_at)")} as first, ${ms("max(purchased_at)")} as last from purchases where sale_id = ${p(1)} group by item_id`,
    reportCheckouts: `select outcome, count(*) as n from checkout_attempts where sale_id = ${p(1)} group by outcome`,
    reportPurchases: `select outcome, count(*) as n from purchase_attempts where sale_id = ${p(1)} group by outcome`,
    reportReleases: `select count(*) as n from hold_releases where sale_id = ${p(1)}`,
    insertAudit: `insert into sale_audits (sale_id, at, trigger, differences, rebuilt, result) values (${p(1)}, ${t(2)}, ${p(3)}, ${p(4)}, ${p(5)}, ${p(6)})`,
    latestAudit: `select result from sale_audits where sale_id = ${p(1)} order by id desc limit 1`,
    /** The latest audit of each sale audited since p1. */
    recentAudits: `select a.result from sale_audits a where a.at > ${t(1)} and a.id = (select max(b.id) from sale_audits b where b.sale_id = a.sale_id)`,
  }
}

/** A unit of a user's, or an order: item, unit, buyer, code and time (purchase, or a hold's expiry). */
export type KeptUnit = { itemId: number; unit: number; userId: string; code: string; at: number }
export const keptUnitOf = (r: SaleRow): KeptUnit => ({ itemId: Number(r.item_id), unit: Number(r.unit), userId: String(r.user_id), code: String(r.code), at: toMs(r.at) })

/** What a sale's report reads from the store. */
export type ReportRows = { items: { itemId: number; sold: number; first: number; last: number }[]; checkouts: Record<string, number>; purchases: Record<string, number>; released: number }

export function reportOf(items: SaleRow[], checkouts: SaleRow[], purchases: SaleRow[], released: SaleRow[]): ReportRows {
  const outcomes = (rows: SaleRow[]) => Object.fromEntries(rows.map((r) => [String(r.outcome), Number(r.n)]))
  return {
    items: items.map((r) => ({ itemId: Number(r.item_id), sold: Number(r.sold), first: toMs(r.first), last: toMs(r.last) })),
    checkouts: outcomes(checkouts),
    purchases: outcomes(purchases),
    released: Number(released[0]?.n ?? 0),
  }
}

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v))
/** A time as either dialect returns it: Unix ms (as text or a number) or ISO-8601 text. */
export const toMs = (v: unknown): number => (typeof v === "number" ? v : /^\d+$/.test(String(v)) ? Number(v) : Date.parse(String(v)))
const msOrNull = (v: unknown) => (v === null || v === undefined ? null : toMs(v))

/** A kept sale's row and its items' rows, as a Sale. */
export function saleFromRows(row: SaleRow, itemRows: SaleRow[]): Sale {
  const items = itemRows.map((r): SaleItem => {
    const item: SaleItem = { id: Number(r.item_id), name: String(r.name), image: String(r.image), stock: Number(r.stock), perUser: Number(r.per_user) }
    if (r.price !== null && r.price !== undefined) item.price = Number(r.price)
    return item
  })
  return {
    id: Number(row.id),
    kind: row.kind === "recurring" ? "recurring" : "planned",
    name: String(row.name),
    startsAt: toMs(row.starts_at),
    endsAt: toMs(row.ends_at),
    endedAt: msOrNull(row.ended_at),
    paused: row.paused === true || row.paused === 1,
    userLimit: Number(row.user_limit),
    holdMs: Number(row.hold_seconds) * 1000,
    items: listedItems(items),
    rev: Number(row.rev),
  }
}

export const overrideFromRow = (row: SaleRow): RecurringOverride => ({ paused: row.paused === true || row.paused === 1, endedAt: msOrNull(row.ended_at), rev: Number(row.rev) })

/** A kept action's row. */
export const actionFromRow = (row: SaleRow): ActionRow => ({
  id: Number(row.id),
  at: toMs(row.at),
  action: String(row.action),
  saleId: num(row.sale_id),
  details: JSON.parse(String(row.details)) as Record<string, unknown>,
  client: row.client === null ? null : String(row.client),
})

/** The sale after a change (the items' stock included); the revision is the caller's. */
export function changed(sale: Sale, change: SaleChange, rev: number): Sale {
  const stocks = new Map((change.stocks ?? []).map((s) => [s.id, s.stock]))
  const items = stocks.size === 0 ? sale.items : listedItems(Array.from({ length: sale.items.size }, (_, i) => {
    const item = sale.items.at(i)
    return stocks.has(item.id) ? { ...item, stock: stocks.get(item.id)! } : item
  }))
  return {
    ...sale,
    name: change.name ?? sale.name,
    endsAt: change.endsAt ?? sale.endsAt,
    userLimit: change.userLimit ?? sale.userLimit,
    holdMs: change.holdMs ?? sale.holdMs,
    paused: change.paused ?? sale.paused,
    endedAt: change.endedAt ?? sale.endedAt,
    items,
    rev,
  }
}

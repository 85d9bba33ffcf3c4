/**
 * The kept tables, described once. PostgreSQL (Redis engine) and SQLite (embedded engine) get their DDL
 * and their recovery queries from here, so the two stores cannot drift apart.
 */
export type Dialect = "postgres" | "sqlite"

type Column = [name: string, type: "bigint" | "int" | "text" | "time", nullable?: "null"]
type Table = {
  name: string
  /** An attempt table is keyed by its event: the journal entry id in PostgreSQL, a row number in SQLite. */
  keyedByEvent: boolean
  columns: Column[]
  constraints?: string[]
}

export const tables: Table[] = [
  {
    name: "checkout_attempts",
    keyedByEvent: true,
    columns: [["sale_id", "bigint"], ["user_id", "text"], ["item_id", "int"], ["outcome", "text"], ["code", "text", "null"], ["expires_at", "time", "null"], ["created_at", "time"]],
  },
  {
    name: "purchases",
    keyedByEvent: false,
    columns: [["sale_id", "bigint"], ["item_id", "int"], ["user_id", "text"], ["code", "text"], ["purchased_at", "time"]],
    // The store itself refuses a second sale of an item or of a code.
    constraints: ["primary key (sale_id, item_id)", "unique (code)"],
  },
  {
    name: "purchase_attempts",
    keyedByEvent: true,
    columns: [["sale_id", "bigint"], ["code", "text"], ["outcome", "text"], ["user_id", "text", "null"], ["item_id", "int", "null"], ["created_at", "time"]],
  },
]

/** Indexes recovery needs; PostgreSQL's primary key (sale_id, event_id) already finds a sale's attempts. */
const indexes: { name: string; on: string; dialects: Dialect[] }[] = [
  { name: "checkout_attempts_holds", on: "checkout_attempts (sale_id, expires_at) where outcome = 'reserved'", dialects: ["postgres"] },
  { name: "checkout_attempts_sale", on: "checkout_attempts (sale_id, outcome)", dialects: ["sqlite"] },
  { name: "purchase_attempts_sale", on: "purchase_attempts (sale_id, outcome)", dialects: ["sqlite"] },
]

const types: Record<Dialect, Record<Column[1], string>> = {
  postgres: { bigint: "bigint", int: "int", text: "text", time: "timestamptz" },
  // SQLite keeps times as ISO-8601 text in UTC, which sorts and compares as time.
  sqlite: { bigint: "integer", int: "integer", text: "text", time: "text" },
}

/** Idempotent statements that create every table and index. */
export function ddl(dialect: Dialect): string[] {
  const statements = tables.map((table) => {
    const parts: string[] = []
    if (table.keyedByEvent && dialect === "sqlite") parts.push("id integer primary key")
    for (const [name, type, nullable] of table.columns) parts.push(`${name} ${types[dialect][type]}${nullable ? "" : " not null"}`)
    if (table.keyedByEvent && dialect === "postgres") parts.push("event_id text not null", "primary key (sale_id, event_id)")
    parts.push(...(table.constraints ?? []))
    return `create table if not exists ${table.name} (\n  ${parts.join(",\n  ")}\n)`
  })
  for (const index of indexes) if (index.dialects.includes(dialect)) statements.push(`create index if not exists ${index.name} on ${index.on}`)
  return statements
}

/**
 * What rebuilds a sale: its counters, what was sold, and the holds still live at a time and not bought.
 * Each query takes the sale id as its first parameter; `holds` takes the time as its second, as the
 * dialect keeps times (timestamptz from Unix ms in PostgreSQL, ISO text in SQLite). Times come back as Unix ms.
 */
export function recoveryQueries(dialect: Dialect) {
  const [sale, now] = dialect === "postgres" ? ["$1", "to_timestamp($2::bigint / 1000.0)"] : ["?1", "?2"]
  const ms = (column: string) => (dialect === "postgres" ? `(extract(epoch from ${column}) * 1000)::bigint::text` : column)
  const accepted = "outcome in ('reserved', 'repeated')"
  return {
    checkouts: `select count(*) filter (where ${accepted}) as accepted, count(*) filter (where not ${accepted}) as rejected from checkout_attempts where sale_id = ${sale}`,
    purchases: `select count(*) filter (where outcome = 'purchased') as accepted, count(*) filter (where outcome <> 'purchased') as rejected from purchase_attempts where sale_id = ${sale}`,
    sold: `select item_id, user_id, code, ${ms("purchased_at")} as at from purchases where sale_id = ${sale}`,
    holds: `select a.item_id, a.user_id, a.code, ${ms("a.expires_at")} as at from checkout_attempts a
      where a.sale_id = ${sale} and a.outcome = 'reserved' and a.expires_at > ${now}
        and not exists (select 1 from purchases p where p.code = a.code)
      order by a.expires_at`,
  }
}

type Rows = { checkouts: Record<string, unknown>[]; purchases: Record<string, unknown>[]; sold: Record<string, unknown>[]; holds: Record<string, unknown>[] }

/** The snapshot the recovery queries' rows describe; `toMs` reads a time as the dialect returns it. */
export function snapshotOf(rows: Rows, toMs: (value: unknown) => number) {
  const entry = (r: Record<string, unknown>) => ({ itemId: Number(r.item_id), userId: String(r.user_id), code: String(r.code), at: toMs(r.at) })
  const sold = rows.sold.map(entry)
  const counts = (r: Record<string, unknown> | undefined) => ({ accepted: Number(r?.accepted ?? 0), rejected: Number(r?.rejected ?? 0) })
  const purchases = counts(rows.purchases[0])
  // A purchase kept without its attempt row (older data) still counts as accepted.
  purchases.accepted = Math.max(purchases.accepted, sold.length)
  return { checkouts: counts(rows.checkouts[0]), purchases, sold, holds: rows.holds.map(entry) }
}

/**
 * The kept tables, described once. PostgreSQL (Redis engine) and SQLite (embedded engine) get their DDL, their
 * migrations of a store an earlier version wrote, and their recovery queries from here, so the two stores cannot
 * drift apart.
 */
export type Dialect = "postgres" | "sqlite"

type Type = "bigint" | "int" | "text" | "time" | "bool" | "number"
/** name, type, null allowed, default (a literal in both dialects), for columns an earlier version lacked. */
type Column = [name: string, type: Type, nullable?: "null", fill?: string]
export type Table = {
  name: string
  /** An attempt table is keyed by its event: the journal entry id in PostgreSQL, a row number in SQLite. */
  keyedByEvent?: boolean
  /** A table whose rows number themselves (SQLite integer key, PostgreSQL identity). */
  numbered?: boolean
  columns: Column[]
  primaryKey?: string[]
  unique?: string[][]
}

export const tables: Table[] = [
  {
    name: "checkout_attempts",
    keyedByEvent: true,
    // unit: the hold's unit (a repeat's too); added with stock, so null in rows an earlier version wrote (their unit is 1).
    columns: [["sale_id", "bigint"], ["user_id", "text"], ["item_id", "int"], ["outcome", "text"], ["code", "text", "null"], ["expires_at", "time", "null"], ["created_at", "time"], ["unit", "int", "null"]],
  },
  {
    name: "purchases",
    columns: [["sale_id", "bigint"], ["item_id", "int"], ["user_id", "text"], ["code", "text"], ["purchased_at", "time"], ["unit", "int", undefined, "1"]],
    // The store itself refuses a second sale of a unit or of a code.
    primaryKey: ["sale_id", "item_id", "unit"],
    unique: [["code"]],
  },
  {
    name: "purchase_attempts",
    keyedByEvent: true,
    columns: [["sale_id", "bigint"], ["code", "text"], ["outcome", "text"], ["user_id", "text", "null"], ["item_id", "int", "null"], ["created_at", "time"], ["unit", "int", "null"]],
  },
  {
    // Planned sales, and the recurring sales an operator paused or ended. rev: the revision of its settings.
    name: "sales",
    columns: [
      ["id", "bigint"],
      ["kind", "text"],
      ["name", "text"],
      ["starts_at", "time"],
      ["ends_at", "time"],
      ["ended_at", "time", "null"],
      ["paused", "bool"],
      ["user_limit", "int"],
      ["hold_seconds", "int"],
      ["rev", "bigint"],
      ["created_at", "time"],
      ["deleted_at", "time", "null"],
    ],
    primaryKey: ["id"],
  },
  {
    name: "sale_items",
    columns: [["sale_id", "bigint"], ["item_id", "int"], ["position", "int"], ["name", "text"], ["image", "text"], ["price", "number", "null"], ["stock", "int"], ["per_user", "int"]],
    primaryKey: ["sale_id", "item_id"],
  },
  {
    // Holds an operator released by hand: a rebuild from the store never brings one back.
    name: "hold_releases",
    columns: [["sale_id", "bigint"], ["code", "text"], ["released_at", "time"], ["client", "text", "null"]],
    primaryKey: ["sale_id", "code"],
  },
  {
    // Each audit of a sale's live state against the store (sale/audit.ts): its verdict and what it found, as JSON.
    name: "sale_audits",
    numbered: true,
    columns: [["sale_id", "bigint"], ["at", "time"], ["trigger", "text"], ["differences", "int"], ["rebuilt", "bool"], ["result", "text"]],
  },
  {
    // Every operator action, never the token: kept before it is answered.
    name: "admin_actions",
    numbered: true,
    columns: [["at", "time"], ["action", "text"], ["sale_id", "bigint", "null"], ["details", "text"], ["client", "text", "null"]],
  },
]

/** Indexes recovery needs; PostgreSQL's primary key (sale_id, event_id) already finds a sale's attempts. */
const indexes: { name: string; on: string; dialects: Dialect[] }[] = [
  { name: "checkout_attempts_holds", on: "checkout_attempts (sale_id, expires_at) where outcome = 'reserved'", dialects: ["postgres"] },
  { name: "checkout_attempts_sale", on: "checkout_attempts (sale_id, outcome)", dialects: ["sqlite"] },
  { name: "purchase_attempts_sale", on: "purchase_attempts (sale_id, outcome)", dialects: ["sqlite"] },
  { name: "sales_rev", on: "sales (rev)", dialects: ["postgres", "sqlite"] },
  { name: "admin_actions_sale", on: "admin_actions (sale_id, at)", dialects: ["postgres", "sqlite"] },
  { name: "sale_audits_sale", on: "sale_audits (sale_id, id)", dialects: ["postgres", "sqlite"] },
]

const types: Record<Dialect, Record<Type, string>> = {
  postgres: { bigint: "bigint", int: "int", text: "text", time: "timestamptz", bool: "boolean", number: "numeric" },
  // SQLite keeps times as ISO-8601 text in UTC, which sorts and compares as time.
  sqlite: { bigint: "integer", int: "integer", text: "text", time: "text", bool: "integer", number: "real" },
}

const columnDdl = (dialect: Dialect, [name, type, nullable, fill]: Column) => `${name} ${types[dialect][type]}${nullable ? "" : " not null"}${fill === undefined ? "" : ` default ${fill}`}`

/** The `create table` statement of one table, as this version describes it. */
export function createTable(dialect: Dialect, table: Table, name = table.name): string {
  const parts: string[] = []
  if (table.keyedByEvent && dialect === "sqlite") parts.push("id integer primary key")
  if (table.numbered) parts.push(dialect === "sqlite" ? "id integer primary key" : "id bigint generated always as identity primary key")
  for (const column of table.columns) parts.push(columnDdl(dialect, column))
  if (table.keyedByEvent && dialect === "postgres") parts.push("event_id text not null", "primary key (sale_id, event_id)")
  if (table.primaryKey) parts.push(`primary key (${table.primaryKey.join(", ")})`)
  for (const columns of table.unique ?? []) parts.push(`unique (${columns.join(", ")})`)
  return `create table if not exists ${name} (\n  ${parts.join(",\n  ")}\n)`
}

/** Idempotent statements that create every table and index. */
export function ddl(dialect: Dialect): string[] {
  const statements = tables.map((table) => createTable(dialect, table))
  for (const index of indexes) if (index.dialects.includes(dialect)) statements.push(`create index if not exists ${index.name} on ${index.on}`)
  return statements
}

/**
 * PostgreSQL's migration of a store an earlier version wrote, in place: every column this version added (a
 * null or its default in old rows), and a primary key that changed (purchases was keyed by (sale_id, item_id)
 * before stock: every old sale was unit 1). Idempotent; run before ddl's indexes.
 */
export function postgresMigration(): string[] {
  const statements: string[] = []
  for (const table of tables) {
    for (const column of table.columns) statements.push(`alter table ${table.name} add column if not exists ${columnDdl("postgres", column)}`)
    if (!table.primaryKey) continue
    const key = `PRIMARY KEY (${table.primaryKey.join(", ")})`
    statements.push(`do $$ begin
  if exists (select 1 from pg_constraint where conrelid = '${table.name}'::regclass and contype = 'p' and pg_get_constraintdef(oid) <> '${key}') then
    alter table ${table.name} drop constraint ${table.name}_pkey;
    alter table ${table.name} add primary key (${table.primaryKey.join(", ")});
  end if;
end $$`)
  }
  return statements
}

/** What SQLite's migration needs of the description: the columns to add to an older table, or a rebuild when its key changed. */
export function sqliteMigration(table: Table, existing: { name: string; pk: number }[]): string[] {
  const have = new Set(existing.map((c) => c.name))
  const key = existing.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name)
  const wantedKey = table.primaryKey ?? (table.keyedByEvent || table.numbered ? ["id"] : [])
  if (existing.length > 0 && key.join(",") !== wantedKey.join(",")) {
    // SQLite cannot change a primary key: copy the rows into a table made as this version describes it.
    const copied = table.columns.filter(([name]) => have.has(name)).map(([name]) => name)
    const keep = table.keyedByEvent || table.numbered ? ["id", ...copied] : copied
    return [createTable("sqlite", table, `${table.name}_migrated`), `insert into ${table.name}_migrated (${keep.join(", ")}) select ${keep.join(", ")} from ${table.name}`, `drop table ${table.name}`, `alter table ${table.name}_migrated rename to ${table.name}`]
  }
  return table.columns.filter(([name]) => existing.length > 0 && !have.has(name)).map((column) => `alter table ${table.name} add column ${columnDdl("sqlite", column)}`)
}

/**
 * What rebuilds a sale: its counters, what was sold, and the holds still live at a time, not bought and not
 * released by an operator. Each query takes the sale id as its first parameter; `holds` takes the time as its
 * second, as the dialect keeps times (timestamptz from Unix ms in PostgreSQL, ISO text in SQLite). Times come
 * back as Unix ms. A hold kept by an earlier version has no unit: it was unit 1.
 */
export function recoveryQueries(dialect: Dialect) {
  const [sale, now] = dialect === "postgres" ? ["$1", "to_timestamp($2::bigint / 1000.0)"] : ["?1", "?2"]
  const ms = (column: string) => (dialect === "postgres" ? `(extract(epoch from ${column}) * 1000)::bigint::text` : column)
  const accepted = "outcome in ('reserved', 'repeated')"
  return {
    checkouts: `select count(*) filter (where ${accepted}) as accepted, count(*) filter (where not ${accepted}) as rejected from checkout_attempts where sale_id = ${sale}`,
    purchases: `select count(*) filter (where outcome = 'purchased') as accepted, count(*) filter (where outcome <> 'purchased') as rejected from purchase_attempts where sale_id = ${sale}`,
    sold: `select item_id, unit, user_id, code, ${ms("purchased_at")} as at from purchases where sale_id = ${sale}`,
    holds: `select a.item_id, coalesce(a.unit, 1) as unit, a.user_id, a.code, ${ms("a.expires_at")} as at from checkout_attempts a
      where a.sale_id = ${sale} and a.outcome = 'reserved' and a.expires_at > ${now}
        and not exists (select 1 from purchases p where p.code = a.code)
        and not exists (select 1 from hold_releases r where r.sale_id = a.sale_id and r.code = a.code)
      order by a.expires_at`,
  }
}

type Rows = { checkouts: Record<string, unknown>[]; purchases: Record<string, unknown>[]; sold: Record<string, unknown>[]; holds: Record<string, unknown>[] }

/** The snapshot the recovery queries' rows describe; `toMs` reads a time as the dialect returns it. */
export function snapshotOf(rows: Rows, toMs: (value: unknown) => number) {
  const entry = (r: Record<string, unknown>) => ({ itemId: Number(r.item_id), unit: Number(r.unit), userId: String(r.user_id), code: String(r.code), at: toMs(r.at) })
  const sold = rows.sold.map(entry)
  const counts = (r: Record<string, unknown> | undefined) => ({ accepted: Number(r?.accepted ?? 0), rejected: Number(r?.rejected ?? 0) })
  const purchases = counts(rows.purchases[0])
  // A purchase kept without its attempt row (older data) still counts as accepted.
  purchases.accepted = Math.max(purchases.accepted, sold.length)
  return { checkouts: counts(rows.checkouts[0]), purchases, sold, holds: rows.holds.map(entry) }
}

/** The embedded engine's durable store: the PostgreSQL tables, in one SQLite file in WAL mode. */
import { Database } from "bun:sqlite"
import { addSold, emptySale, restoreHold, type Row, type SaleState } from "./rules"

const schema = [
  `create table if not exists checkout_attempts (
    id integer primary key,
    sale_id integer not null,
    user_id text not null,
    item_id integer not null,
    outcome text not null,
    code text,
    expires_at text,
    created_at text not null
  )`,
  `create index if not exists checkout_attempts_sale on checkout_attempts (sale_id, outcome)`,
  `create table if not exists purchases (
    sale_id integer not null,
    item_id integer not null,
    user_id text not null,
    code text not null unique,
    purchased_at text not null,
    primary key (sale_id, item_id)
  )`,
  `create table if not exists purchase_attempts (
    id integer primary key,
    sale_id integer not null,
    code text not null,
    outcome text not null,
    user_id text,
    item_id integer,
    created_at text not null
  )`,
  `create index if not exists purchase_attempts_sale on purchase_attempts (sale_id, outcome)`,
]

const iso = (ms: number) => new Date(ms).toISOString()
const msOf = (text: string) => Date.parse(text)

export type Store = {
  /** Writes the rows in one transaction; throws if it did not commit. */
  write(rows: Row[]): void
  /** What the file keeps of one sale, as live state at `now`. */
  load(saleId: number, now: number): SaleState
  /** Whether anything of this sale was ever kept. */
  known(saleId: number): boolean
  db: Database
  close(): void
}

/** Opens (creating if needed) the SQLite file. synchronous=NORMAL in WAL mode: a commit survives the process being killed. */
export function openStore(path: string): Store {
  const db = new Database(path, { create: true, strict: true })
  db.run("pragma journal_mode = wal")
  db.run("pragma synchronous = normal")
  db.run("pragma busy_timeout = 5000")
  for (const statement of schema) db.run(statement)

  const insertCheckout = db.prepare("insert into checkout_attempts (sale_id, user_id, item_id, outcome, code, expires_at, created_at) values (?, ?, ?, ?, ?, ?, ?)")
  const insertPurchaseAttempt = db.prepare("insert into purchase_attempts (sale_id, code, outcome, user_id, item_id, created_at) values (?, ?, ?, ?, ?, ?)")
  const insertPurchase = db.prepare("insert into purchases (sale_id, item_id, user_id, code, purchased_at) values (?, ?, ?, ?, ?)")
  const write = db.transaction((rows: Row[]) => {
    for (const r of rows) {
      if (r.kind === "checkout") insertCheckout.run(r.saleId, r.userId, r.itemId, r.outcome, r.code, r.expiresAt === null ? null : iso(r.expiresAt), iso(r.at))
      else {
        insertPurchaseAttempt.run(r.saleId, r.code, r.outcome, r.userId, r.itemId, iso(r.at))
        if (r.outcome === "purchased") insertPurchase.run(r.saleId, r.itemId, r.userId, r.code, iso(r.at))
      }
    }
  })

  const counts = {
    checkouts: db.prepare("select outcome in ('reserved', 'repeated') as ok, count(*) as n from checkout_attempts where sale_id = ? group by 1"),
    purchases: db.prepare("select outcome = 'purchased' as ok, count(*) as n from purchase_attempts where sale_id = ? group by 1"),
    sold: db.prepare("select item_id, user_id, code, purchased_at from purchases where sale_id = ?"),
    known: db.prepare("select exists (select 1 from checkout_attempts where sale_id = ?1) or exists (select 1 from purchase_attempts where sale_id = ?1) as known"),
    holds: db.prepare(`select a.item_id, a.user_id, a.code, a.expires_at from checkout_attempts a
      where a.sale_id = ? and a.outcome = 'reserved' and a.expires_at > ?
        and not exists (select 1 from purchases p where p.code = a.code)
      order by a.expires_at`),
  }

  function load(saleId: number, now: number): SaleState {
    const sale = emptySale(saleId)
    for (const r of counts.checkouts.all(saleId) as { ok: number; n: number }[]) {
      if (r.ok) sale.stats.checkoutsOk = r.n
      else sale.stats.checkoutsRejected = r.n
    }
    for (const r of counts.purchases.all(saleId) as { ok: number; n: number }[]) {
      if (r.ok) sale.stats.purchasesOk = r.n
      else sale.stats.purchasesRejected = r.n
    }
    for (const r of counts.sold.all(saleId) as { item_id: number; user_id: string; code: string; purchased_at: string }[]) {
      addSold(sale, { kind: "p", itemId: r.item_id, userId: r.user_id, code: r.code, at: msOf(r.purchased_at) })
    }
    for (const r of counts.holds.all(saleId, iso(now)) as { item_id: number; user_id: string; code: string; expires_at: string }[]) {
      restoreHold(sale, { itemId: r.item_id, userId: r.user_id, code: r.code, expiresAt: msOf(r.expires_at) })
    }
    return sale
  }

  const known = (saleId: number) => Boolean((counts.known.get(saleId) as { known: number }).known)

  return { write, load, known, db, close: () => db.close() }
}

/** The embedded engine's durable store: the kept tables (sale/schema.ts), in one SQLite file in WAL mode. */
import { Database } from "bun:sqlite"
import type { DecisionRecord, SaleSnapshot } from "../sale/records"
import { isoFormatter } from "../sale/clock"
import { ddl, recoveryQueries, snapshotOf } from "../sale/schema"

const iso = isoFormatter()
const isoExpiry = isoFormatter()

export type Store = {
  /** Writes the records in one transaction; throws if it did not commit. */
  write(records: DecisionRecord[]): void
  /** What the file keeps of one sale, with the holds still live at `now`. */
  load(saleId: number, now: number): SaleSnapshot
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
  for (const statement of ddl("sqlite")) db.run(statement)

  const insertCheckout = db.prepare("insert into checkout_attempts (sale_id, user_id, item_id, outcome, code, expires_at, created_at) values (?, ?, ?, ?, ?, ?, ?)")
  const insertPurchaseAttempt = db.prepare("insert into purchase_attempts (sale_id, code, outcome, user_id, item_id, created_at) values (?, ?, ?, ?, ?, ?)")
  const insertPurchase = db.prepare("insert into purchases (sale_id, item_id, user_id, code, purchased_at) values (?, ?, ?, ?, ?)")
  const write = db.transaction((records: DecisionRecord[]) => {
    for (const r of records) {
      if (r.kind === "checkout") insertCheckout.run(r.saleId, r.userId, r.itemId, r.outcome, r.code, r.expiresAt === null ? null : isoExpiry(r.expiresAt), iso(r.at))
      else {
        insertPurchaseAttempt.run(r.saleId, r.code, r.outcome, r.userId, r.itemId, iso(r.at))
        if (r.outcome === "purchased") insertPurchase.run(r.saleId, r.itemId, r.userId, r.code, iso(r.at))
      }
    }
  })

  const recovery = Object.fromEntries(Object.entries(recoveryQueries("sqlite")).map(([name, text]) => [name, db.prepare(text)])) as Record<keyof ReturnType<typeof recoveryQueries>, ReturnType<Database["prepare"]>>
  const knownQuery = db.prepare("select exists (select 1 from checkout_attempts where sale_id = ?1) or exists (select 1 from purchase_attempts where sale_id = ?1) as known")

  function load(saleId: number, now: number): SaleSnapshot {
    const rows = (name: keyof typeof recovery, ...params: (number | string)[]) => recovery[name].all(...params) as Record<string, unknown>[]
    return snapshotOf({ checkouts: rows("checkouts", saleId), purchases: rows("purchases", saleId), sold: rows("sold", saleId), holds: rows("holds", saleId, iso(now)) }, (at) => Date.parse(String(at)))
  }

  const known = (saleId: number) => Boolean((knownQuery.get(saleId) as { known: number }).known)

  return { write, load, known, db, close: () => db.close() }
}

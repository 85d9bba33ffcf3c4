/**
 * The embedded engine's durable store: the kept tables (sale/schema.ts), in one SQLite file in WAL mode: the
 * decisions, the sales operators planned or changed, and their actions. A file an earlier version wrote is
 * migrated in place when it is opened.
 */
import { Database } from "bun:sqlite"
import type { DecisionRecord, SaleSnapshot } from "../sale/records"
import { isoFormatter } from "../sale/clock"
import { ddl, recoveryQueries, snapshotOf, sqliteMigration, tables } from "../sale/schema"
import { actionFromRow, changed, definitionQueries, keptUnitOf, operationQueries, overrideFromRow, reportOf, saleFromRows, toMs, type Action, type KeptSales, type NewSale, type SaleChange } from "../sale/definitions"
import { auditOfView, auditView } from "../sale/audit"
import type { SaleCounts, SalesStore } from "../sale/stores"
import type { Sale } from "../sale/sales"

const iso = isoFormatter()
const isoExpiry = isoFormatter()
const isoOf = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export type Store = {
  /** Writes the records in one transaction; throws if it did not commit. */
  write(records: DecisionRecord[]): void
  /** What the file keeps of one sale, with the holds still live at `now`. */
  load(saleId: number, now: number): SaleSnapshot
  /** Whether anything of this sale was ever kept. */
  known(saleId: number): boolean
  /** The sales operators planned or changed. */
  sales: SalesStore & { loadNow(since?: number): KeptSales }
  db: Database
  close(): void
}

/** Brings tables an earlier version created to this version's description, in one transaction. */
function migrate(db: Database): void {
  db.transaction(() => {
    for (const table of tables) {
      const existing = db.query(`pragma table_info(${table.name})`).all() as { name: string; pk: number }[]
      for (const statement of sqliteMigration(table, existing)) db.run(statement)
    }
  })()
}

/** Opens (creating if needed) the SQLite file. synchronous=NORMAL in WAL mode: a commit survives the process being killed. */
export function openStore(path: string): Store {
  const db = new Database(path, { create: true, strict: true })
  db.run("pragma journal_mode = wal")
  db.run("pragma synchronous = normal")
  db.run("pragma busy_timeout = 5000")
  migrate(db)
  for (const statement of ddl("sqlite")) db.run(statement)

  const insertCheckout = db.prepare("insert into checkout_attempts (sale_id, user_id, item_id, outcome, code, unit, expires_at, created_at) values (?, ?, ?, ?, ?, ?, ?, ?)")
  const insertPurchaseAttempt = db.prepare("insert into purchase_attempts (sale_id, code, outcome, user_id, item_id, unit, created_at) values (?, ?, ?, ?, ?, ?, ?)")
  const insertPurchase = db.prepare("insert into purchases (sale_id, item_id, unit, user_id, code, purchased_at) values (?, ?, ?, ?, ?, ?)")
  const write = db.transaction((records: DecisionRecord[]) => {
    for (const r of records) {
      if (r.kind === "checkout") insertCheckout.run(r.saleId, r.userId, r.itemId, r.outcome, r.code, r.unit, r.expiresAt === null ? null : isoExpiry(r.expiresAt), iso(r.at))
      else {
        insertPurchaseAttempt.run(r.saleId, r.code, r.outcome, r.userId, r.itemId, r.unit, iso(r.at))
        if (r.outcome === "purchased") insertPurchase.run(r.saleId, r.itemId, r.unit, r.userId, r.code, iso(r.at))
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

  const q = Object.fromEntries(Object.entries(definitionQueries("sqlite")).map(([name, text]) => [name, db.prepare(text)])) as Record<keyof ReturnType<typeof definitionQueries>, ReturnType<Database["prepare"]>>
  const rows = (statement: ReturnType<Database["prepare"]>, ...params: unknown[]) => statement.all(...(params as never[])) as Record<string, unknown>[]

  function loadNow(since = 0): KeptSales {
    const items = new Map<number, Record<string, unknown>[]>()
    for (const row of rows(q.itemsSince, since)) {
        const list = items.get(Number(row.sale_id))
        if (list) list.push(row)
        else items.set(Number(row.sale_id), [row])
      }
    const planned: Sale[] = []
    const overrides = new Map<number, ReturnType<typeof overrideFromRow>>()
    const deleted: number[] = []
    for (const row of rows(q.sales, since)) {
      if (row.deleted) deleted.push(Number(row.id))
      else if (row.kind === "recurring") overrides.set(Number(row.id), overrideFromRow(row))
      else planned.push(saleFromRows(row, items.get(Number(row.id)) ?? []))
    }
    return { planned, overrides, deleted, rev: Number(rows(q.revision)[0]!.rev) }
  }

  const recordAction = (a: Action) => q.insertAction.run(isoOf(a.at), a.action, a.saleId, JSON.stringify(a.details), a.client)
  const nextRev = () => Number(rows(q.revision)[0]!.rev) + 1
  const overlaps = (startsAt: number, endsAt: number, except: number) => rows(q.overlaps, isoOf(startsAt), isoOf(endsAt), except).map((r) => Number(r.id))
  const putSale = (s: Sale) => q.updateSale.run(s.id, s.name, isoOf(s.endsAt), isoOf(s.endedAt), s.paused ? 1 : 0, s.userLimit, s.holdMs / 1000, s.rev)

  const create = db.transaction((input: NewSale, action: Action): { sale: Sale } | { overlaps: number[] } => {
    const found = overlaps(input.startsAt, input.endsAt, 0)
    if (found.length > 0) return { overlaps: found }
    const id = Number(rows(q.nextId)[0]!.id)
    const rev = nextRev()
    q.insertSale.run(id, "planned", input.name, isoOf(input.startsAt), isoOf(input.endsAt), null, 0, input.userLimit, input.holdMs / 1000, rev, isoOf(action.at))
    input.items.forEach((item, i) => q.insertItem.run(id, item.id, i, item.name, item.image, item.price ?? null, item.stock, item.perUser))
    recordAction({ ...action, saleId: id })
    return { sale: saleFromRows(rows(q.sale, id)[0]!, rows(q.items, id)) }
  })

  const change = db.transaction((before: Sale, delta: SaleChange, action: Action): { sale: Sale } | { overlaps: number[] } => {
    if (delta.endsAt !== undefined) {
      const found = overlaps(before.startsAt, delta.endsAt, before.id)
      if (found.length > 0) return { overlaps: found }
    }
    const after = changed(before, delta, nextRev())
    // A recurring sale is kept once an operator changes it.
    if (rows(q.sale, before.id).length === 0) q.insertSale.run(after.id, after.kind, after.name, isoOf(after.startsAt), isoOf(after.endsAt), isoOf(after.endedAt), after.paused ? 1 : 0, after.userLimit, after.holdMs / 1000, after.rev, isoOf(action.at))
    else putSale(after)
    for (const { id, stock } of delta.stocks ?? []) q.updateStock.run(before.id, id, stock)
    recordAction(action)
    return { sale: after }
  })

  const remove = db.transaction((sale: Sale, action: Action) => {
    q.deleteSale.run(sale.id, isoOf(action.at), nextRev())
    recordAction(action)
  })

  const countsQuery = db.prepare(`select
      (select count(*) from purchases where sale_id = ?1) as sold,
      (select count(*) from checkout_attempts where sale_id = ?1 and outcome in ('reserved', 'repeated')) as c_ok,
      (select count(*) from checkout_attempts where sale_id = ?1 and outcome not in ('reserved', 'repeated')) as c_rej,
      (select count(*) from purchase_attempts where sale_id = ?1 and outcome = 'purchased') as p_ok,
      (select count(*) from purchase_attempts where sale_id = ?1 and outcome <> 'purchased') as p_rej`)
  const counts = (saleId: number): SaleCounts => {
    const r = countsQuery.get(saleId) as Record<string, number>
    return { sold: r.sold!, reserved: 0, checkouts: { accepted: r.c_ok!, rejected: r.c_rej! }, purchases: { accepted: Math.max(r.p_ok!, r.sold!), rejected: r.p_rej! } }
  }

  const o = Object.fromEntries(Object.entries(operationQueries("sqlite")).map(([name, text]) => [name, db.prepare(text)])) as Record<keyof ReturnType<typeof operationQueries>, ReturnType<Database["prepare"]>>
  const release = db.transaction((saleId: number, code: string, action: Action) => {
    o.insertRelease.run(saleId, code, isoOf(action.at), action.client)
    recordAction(action)
  })

  /** The orders, read on a connection of their own: one consistent snapshot, while the engine goes on writing. */
  async function* orders(saleId: number) {
    const reader = new Database(db.filename, { readonly: true, strict: true })
    try {
      let batch: ReturnType<typeof keptUnitOf>[] = []
      for (const row of reader.query(operationQueries("sqlite").orders).iterate(saleId) as IterableIterator<Record<string, unknown>>) {
        batch.push(keptUnitOf(row))
        if (batch.length === 1000) {
          yield batch
          batch = []
        }
      }
      if (batch.length > 0) yield batch
    } finally {
      reader.close()
    }
  }

  const sales: Store["sales"] = {
    loadNow,
    load: async (since) => loadNow(since),
    revision: async () => Number(rows(q.revision)[0]!.rev),
    create: async (input, action) => create(input, action),
    change: async (before, delta, action) => change(before, delta, action),
    remove: async (sale, action) => remove(sale, action),
    record: async (action) => void recordAction(action),
    actions: async ({ before, saleId, limit }) => rows(q.actions, before ?? Number.MAX_SAFE_INTEGER, saleId ?? null, limit).map((r) => ({ ...actionFromRow(r), at: toMs(r.at) })),
    counts: async (saleId) => counts(saleId),
    snapshot: async (saleId, now) => load(saleId, now),
    release: async (saleId, code, action) => release(saleId, code, action),
    userOf: async (saleId, userId, now) => ({ purchases: rows(o.userPurchases, saleId, userId).map(keptUnitOf), holds: rows(o.userHolds, saleId, userId, isoOf(now)).map(keptUnitOf) }),
    orders,
    report: async (saleId) => reportOf(rows(o.reportItems, saleId), rows(o.reportCheckouts, saleId), rows(o.reportPurchases, saleId), rows(o.reportReleases, saleId)),
    keepAudit: async (audit) => void o.insertAudit.run(audit.saleId, isoOf(audit.at), audit.trigger, audit.count, audit.rebuiltAt === null ? 0 : 1, JSON.stringify(auditView(audit))),
    latestAudit: async (saleId) => {
      const [row] = rows(o.latestAudit, saleId)
      return row && auditOfView(JSON.parse(String(row.result)))
    },
    recentAudits: async (since) => rows(o.recentAudits, isoOf(since)).map((r) => auditOfView(JSON.parse(String(r.result)))),
  }

  return { write, load, known, sales, db, close: () => db.close() }
}

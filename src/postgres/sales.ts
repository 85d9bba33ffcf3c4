/**
 * The sales operators planned or changed, and their actions, kept in PostgreSQL (the Redis engine's side of
 * sale/operator.ts's SalesStore). Every write is one transaction under an advisory lock, so that two instances
 * never give out one id or revision, or create two overlapping sales at once.
 */
import type { Sql, TransactionSql } from "postgres"
import { actionFromRow, changed, definitionQueries, keptUnitOf, operationQueries, overrideFromRow, reportOf, saleFromRows, type Action, type KeptSales, type KeptUnit, type NewSale, type SaleChange } from "../sale/definitions"
import { auditOfView, auditView, type Audit } from "../sale/audit"
import { loadSale } from "./store"
import type { SalesStore } from "../sale/stores"
import type { RecurringOverride, Sale } from "../sale/sales"
import { ensureSchema } from "./schema"

const q = definitionQueries("postgres")
const o = operationQueries("postgres")
const lockId = 727275

type Runner = Sql | TransactionSql
const rows = (sql: Runner, text: string, params: unknown[] = []) => sql.unsafe(text, params as never[]) as unknown as Promise<Record<string, unknown>[]>

export function postgresSales(sql: Sql): SalesStore {
  const itemsOf = (sql: Runner, id: unknown) => rows(sql, q.items, [id])

  async function load(since = 0): Promise<KeptSales> {
    await ensureSchema(sql)
    return sql.begin("isolation level repeatable read read only", async (tx) => {
      const rev = Number((await rows(tx, q.revision))[0]!.rev)
      const items = new Map<number, Record<string, unknown>[]>()
      for (const row of await rows(tx, q.itemsSince, [since])) {
        const list = items.get(Number(row.sale_id))
        if (list) list.push(row)
        else items.set(Number(row.sale_id), [row])
      }
      const planned: Sale[] = []
      const overrides = new Map<number, RecurringOverride>()
      const deleted: number[] = []
      for (const row of await rows(tx, q.sales, [since])) {
        if (row.deleted) deleted.push(Number(row.id))
        else if (row.kind === "recurring") overrides.set(Number(row.id), overrideFromRow(row))
        else planned.push(saleFromRows(row, items.get(Number(row.id)) ?? []))
      }
      return { planned, overrides, deleted, rev }
    }) as Promise<KeptSales>
  }

  const record = (tx: Runner, a: Action) => rows(tx, q.insertAction, [a.at, a.action, a.saleId, JSON.stringify(a.details), a.client])
  const nextRev = async (tx: Runner) => Number((await rows(tx, q.revision))[0]!.rev) + 1
  const overlaps = async (tx: Runner, startsAt: number, endsAt: number, except: number) => (await rows(tx, q.overlaps, [startsAt, endsAt, except])).map((r) => Number(r.id))
  const locked = <T>(work: (tx: TransactionSql) => Promise<T>) =>
    ensureSchema(sql).then(() =>
      sql.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(${lockId})`
        return work(tx)
      }) as Promise<T>,
    )

  return {
    load,
    revision: async () => {
      await ensureSchema(sql)
      return Number((await rows(sql, q.revision))[0]!.rev)
    },

    create: (input: NewSale, action: Action) =>
      locked(async (tx) => {
        const found = await overlaps(tx, input.startsAt, input.endsAt, 0)
        if (found.length > 0) return { overlaps: found }
        const id = Number((await rows(tx, q.nextId))[0]!.id)
        await rows(tx, q.insertSale, [id, "planned", input.name, input.startsAt, input.endsAt, null, false, input.userLimit, input.holdMs / 1000, await nextRev(tx), action.at])
        // Up to 100,000 items: one statement, not one per item.
        const columns = { id: [] as number[], position: [] as number[], name: [] as string[], image: [] as string[], price: [] as (number | null)[], stock: [] as number[], perUser: [] as number[] }
        input.items.forEach((item, i) => {
          columns.id.push(item.id)
          columns.position.push(i)
          columns.name.push(item.name)
          columns.image.push(item.image)
          columns.price.push(item.price ?? null)
          columns.stock.push(item.stock)
          columns.perUser.push(item.perUser)
        })
        await tx`insert into sale_items (sale_id, item_id, position, name, image, price, stock, per_user)
          select ${id}, * from unnest(${columns.id}::int[], ${columns.position}::int[], ${columns.name}::text[], ${columns.image}::text[], ${columns.price}::numeric[], ${columns.stock}::int[], ${columns.perUser}::int[])`
        await record(tx, { ...action, saleId: id })
        return { sale: saleFromRows((await rows(tx, q.sale, [id]))[0]!, await itemsOf(tx, id)) }
      }),

    change: (before: Sale, delta: SaleChange, action: Action) =>
      locked(async (tx) => {
        if (delta.endsAt !== undefined) {
          const found = await overlaps(tx, before.startsAt, delta.endsAt, before.id)
          if (found.length > 0) return { overlaps: found }
        }
        const after = changed(before, delta, await nextRev(tx))
        const exists = (await rows(tx, q.sale, [before.id])).length > 0
        // A recurring sale is kept once an operator changes it.
        if (!exists) await rows(tx, q.insertSale, [after.id, after.kind, after.name, after.startsAt, after.endsAt, after.endedAt, after.paused, after.userLimit, after.holdMs / 1000, after.rev, action.at])
        else await rows(tx, q.updateSale, [after.id, after.name, after.endsAt, after.endedAt, after.paused, after.userLimit, after.holdMs / 1000, after.rev])
        for (const { id, stock } of delta.stocks ?? []) await rows(tx, q.updateStock, [before.id, id, stock])
        await record(tx, action)
        return { sale: after }
      }),

    remove: (sale: Sale, action: Action) =>
      locked(async (tx) => {
        await rows(tx, q.deleteSale, [sale.id, action.at, await nextRev(tx)])
        await record(tx, action)
      }),

    record: async (action: Action) => {
      await ensureSchema(sql)
      await record(sql, action)
    },

    actions: async ({ before, saleId, limit }) => {
      await ensureSchema(sql)
      return (await rows(sql, q.actions, [before ?? Number.MAX_SAFE_INTEGER, saleId ?? null, limit])).map(actionFromRow)
    },

    snapshot: (saleId, now) => loadSale(sql, saleId, now),

    release: async (saleId, code, action) => {
      await ensureSchema(sql)
      await sql.begin(async (tx) => {
        await rows(tx, o.insertRelease, [saleId, code, action.at, action.client])
        await record(tx, action)
      })
    },

    userOf: async (saleId, userId, now) => {
      await ensureSchema(sql)
      const [purchases, holds] = await Promise.all([rows(sql, o.userPurchases, [saleId, userId]), rows(sql, o.userHolds, [saleId, userId, Math.floor(now)])])
      return { purchases: purchases.map(keptUnitOf), holds: holds.map(keptUnitOf) }
    },

    async *orders(saleId) {
      await ensureSchema(sql)
      for await (const batch of sql.unsafe(o.orders, [saleId]).cursor(1000)) yield (batch as unknown as Record<string, unknown>[]).map(keptUnitOf)
    },

    report: async (saleId) => {
      await ensureSchema(sql)
      const [items, checkouts, purchases, released] = await Promise.all([o.reportItems, o.reportCheckouts, o.reportPurchases, o.reportReleases].map((text) => rows(sql, text, [saleId])))
      return reportOf(items!, checkouts!, purchases!, released!)
    },

    keepAudit: async (audit: Audit) => {
      await ensureSchema(sql)
      await rows(sql, o.insertAudit, [audit.saleId, audit.at, audit.trigger, audit.count, audit.rebuiltAt !== null, JSON.stringify(auditView(audit))])
    },
    latestAudit: async (saleId) => {
      await ensureSchema(sql)
      const [row] = await rows(sql, o.latestAudit, [saleId])
      return row && auditOfView(JSON.parse(String(row.result)))
    },
    recentAudits: async (since) => {
      await ensureSchema(sql)
      return (await rows(sql, o.recentAudits, [Math.floor(since)])).map((r) => auditOfView(JSON.parse(String(r.result))))
    },

    counts: async (saleId: number) => {
      await ensureSchema(sql)
      const [r] = await sql`select
          (select count(*) from purchases where sale_id = ${saleId})::int as sold,
          (select count(*) from checkout_attempts where sale_id = ${saleId} and outcome in ('reserved', 'repeated'))::int as c_ok,
          (select count(*) from checkout_attempts where sale_id = ${saleId} and outcome not in ('reserved', 'repeated'))::int as c_rej,
          (select count(*) from purchase_attempts where sale_id = ${saleId} and outcome = 'purchased')::int as p_ok,
          (select count(*) from purchase_attempts where sale_id = ${saleId} and outcome <> 'purchased')::int as p_rej`
      return { sold: r!.sold, reserved: 0, checkouts: { accepted: r!.c_ok, rejected: r!.c_rej }, purchases: { accepted: Math.max(r!.p_ok, r!.sold), rejected: r!.p_rej } }
    },
  }
}

/** Reads what PostgreSQL kept of one sale, to rebuild its Redis state after Redis lost it. */
import type { Sql } from "postgres"
import { ensureSchema } from "./schema"

export type SaleSnapshot = {
  checkouts: { accepted: number; rejected: number }
  purchases: { accepted: number; rejected: number }
  sold: { itemId: number; userId: string; code: string; at: number }[]
  /** Holds still live at the snapshot's time and not yet purchased. */
  holds: { itemId: number; userId: string; code: string; at: number }[]
}

export const emptySnapshot = (): SaleSnapshot => ({
  checkouts: { accepted: 0, rejected: 0 },
  purchases: { accepted: 0, rejected: 0 },
  sold: [],
  holds: [],
})

export async function loadSale(sql: Sql, saleId: number, nowMs: number): Promise<SaleSnapshot> {
  await ensureSchema(sql)
  const [checkouts, purchases, sold, holds] = await Promise.all([
    sql`select count(*) filter (where outcome in ('reserved', 'repeated'))::int as accepted,
               count(*) filter (where outcome not in ('reserved', 'repeated'))::int as rejected
        from checkout_attempts where sale_id = ${saleId}`,
    sql`select count(*) filter (where outcome = 'purchased')::int as accepted,
               count(*) filter (where outcome <> 'purchased')::int as rejected
        from purchase_attempts where sale_id = ${saleId}`,
    sql`select item_id, user_id, code, (extract(epoch from purchased_at) * 1000)::bigint::text as at
        from purchases where sale_id = ${saleId}`,
    sql`select a.item_id, a.user_id, a.code, (extract(epoch from a.expires_at) * 1000)::bigint::text as at
        from checkout_attempts a
        where a.sale_id = ${saleId} and a.outcome = 'reserved' and a.expires_at > to_timestamp(${nowMs} / 1000.0)
          and not exists (select 1 from purchases p where p.code = a.code)`,
  ])
  const row = (r: Record<string, unknown>) => ({ itemId: Number(r.item_id), userId: String(r.user_id), code: String(r.code), at: Number(r.at) })
  return {
    checkouts: { accepted: checkouts[0]!.accepted, rejected: checkouts[0]!.rejected },
    purchases: { accepted: Math.max(purchases[0]!.accepted, sold.length), rejected: purchases[0]!.rejected },
    sold: sold.map(row),
    holds: holds.map(row),
  }
}

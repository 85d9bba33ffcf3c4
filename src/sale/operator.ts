/**
 * The operator API's backend, the same for both engines: it checks a request against the sales, keeps the
 * change (and the action) in the durable store before anything is answered, and has the engine apply it to the
 * live state. A change that only tightens (pause, end, a lower stock) reaches the live state first, so that
 * nothing it forbids is decided while it spreads; one that loosens (resume, more stock) only once it is kept.
 */
import type { Action, KeptUnit, NewSale, SaleChange } from "./definitions"
import { auditView } from "./audit"
import { createAudits } from "./audits"
import { saleOfCode } from "./codes"
import { overlapping } from "./schedule"
import { badFields, Refusal, type LiveSales, type SaleCounts, type SalesStore } from "./stores"
import type { Fields } from "./admin"
import { closesAt, purchasableUntil, type Sale } from "./sales"

export type SaleView = Record<string, unknown>

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export type Operator = ReturnType<typeof createOperator>

export type OperatorOptions = {
  /** Counts each operator action kept (/metrics). */
  onAction?: (action: string) => void
  log?: (message: string) => void
}

export function createOperator(store: SalesStore, live: LiveSales, defaults: { userLimit: number; holdMs: number }, { onAction = () => {}, log = console.error }: OperatorOptions = {}) {
  const schedule = () => live.schedule()
  const audits = createAudits(store, live, log)

  function statusOf(sale: Sale, counts: SaleCounts | undefined, now: number): string {
    if (now < sale.startsAt) return "scheduled"
    if (now >= closesAt(sale)) return "ended"
    const units = sale.items.units
    if (counts && counts.sold >= units) return "sold_out"
    return sale.paused ? "paused" : "active"
  }

  async function view(sale: Sale, now: number, withItems: boolean): Promise<SaleView> {
    const counts = (await live.counts(sale)) ?? (await store.counts(sale.id))
    const result: SaleView = {
      id: sale.id,
      kind: sale.kind,
      name: sale.name,
      status: statusOf(sale, counts, now),
      starts_at: iso(sale.startsAt),
      ends_at: iso(sale.endsAt),
      ended_at: iso(sale.endedAt),
      paused: sale.paused,
      user_limit: sale.userLimit,
      hold_seconds: sale.holdMs / 1000,
      items_total: sale.items.size,
      units_total: sale.items.units,
      units_sold: counts.sold,
      units_reserved: counts.reserved,
      units_available: Math.max(0, sale.items.units - counts.sold - counts.reserved),
      checkouts: counts.checkouts,
      purchases: counts.purchases,
      rev: sale.rev,
    }
    if (withItems) {
      const available = await live.available(sale)
      result.items = Array.from({ length: sale.items.size }, (_, i) => {
        const { id, name, image, price, stock, perUser } = sale.items.at(i)
        return { id, name, image, ...(price === undefined ? {} : { price }), stock, per_user: perUser, ...(available ? { available: available[i] } : {}) }
      })
    }
    return result
  }

  function plannedOnly(): void {
    if (schedule().kind !== "planned") throw new Refusal("planned_sales_off", "This server runs the recurring schedule (SALE_SCHEDULE=recurring): sales are created and changed only with SALE_SCHEDULE=planned.")
  }

  const overlapRefusal = (ids: number[]) => new Refusal("sale_overlaps", `The sale would overlap sale ${ids.join(", ")}: one sale is open at a time.`, { overlaps: ids })

  /** Keeps a change, with its tightening part applied first, and applies it all once kept. */
  async function changeSale(sale: Sale, change: SaleChange, action: Action, now: number): Promise<Sale> {
    return live.exclusive(sale, async () => {
      const restricted = await live.restrict(sale, change)
      const changed = change.stocks?.map((s) => s.id) ?? []
      if (restricted instanceof Refusal) throw restricted
      if (change.endedAt !== undefined) change.endedAt = restricted.now
      let kept: Awaited<ReturnType<SalesStore["change"]>>
      try {
        kept = await store.change(sale, change, { ...action, at: restricted.now ?? now })
      } catch (error) {
        // Not kept: the live state goes back to what is kept.
        await live.apply(sale, changed).catch(() => {})
        throw error
      }
      if ("overlaps" in kept) {
        await live.apply(sale, changed).catch(() => {})
        throw overlapRefusal(kept.overlaps)
      }
      onAction(action.action)
      await live.apply(kept.sale, changed)
      await live.reload()
      return kept.sale
    })
  }

  return {
    async list(): Promise<SaleView[]> {
      const now = await live.now()
      const s = schedule()
      const sales = [...s.sales]
      if (s.kind === "recurring") {
        const current = s.current(now) ?? s.next(now)
        if (current && !sales.some((x) => x.id === current.id)) sales.push(current)
      }
      return Promise.all(sales.sort((a, b) => a.startsAt - b.startsAt).map((sale) => view(sale, now, false)))
    },

    async get(id: number): Promise<SaleView> {
      const now = await live.now()
      return view(named(id, now), now, true)
    },

    async create(parse: (now: number) => { sale: NewSale } | { fields: Fields }, client: string | null): Promise<SaleView> {
      plannedOnly()
      const now = await live.now()
      const parsed = parse(now)
      if ("fields" in parsed) throw badFields(parsed.fields)
      const input = parsed.sale
      const overlaps = overlapping(schedule(), input.startsAt, input.endsAt)
      if (overlaps.length > 0) throw overlapRefusal(overlaps.map((s) => s.id))
      const action: Action = { at: now, action: "create_sale", saleId: null, details: { name: input.name, starts_at: iso(input.startsAt), ends_at: iso(input.endsAt), items: input.items.length, units: input.items.reduce((a, i) => a + i.stock, 0), user_limit: input.userLimit, hold_seconds: input.holdMs / 1000 }, client }
      const kept = await store.create(input, action)
      if ("overlaps" in kept) throw overlapRefusal(kept.overlaps)
      onAction(action.action)
      await live.reload()
      return view(kept.sale, now, true)
    },

    async change(id: number, parse: (sale: Sale, now: number) => { change: SaleChange } | { fields: Fields }, client: string | null): Promise<SaleView> {
      plannedOnly()
      const now = await live.now()
      const sale = named(id, now)
      const parsed = parse(sale, now)
      if ("fields" in parsed) throw badFields(parsed.fields)
      const { change } = parsed
      if (change.endsAt !== undefined && now >= closesAt(sale)) throw new Refusal("sale_ended", `Sale ${id} is over: its end cannot move.`)
      if (change.endsAt !== undefined) {
        const overlaps = overlapping(schedule(), sale.startsAt, change.endsAt, sale.id)
        if (overlaps.length > 0) throw overlapRefusal(overlaps.map((s) => s.id))
      }
      const details = { ...change, ...(change.endsAt ? { endsAt: iso(change.endsAt) } : {}) }
      const after = await changeSale(sale, change, { at: now, action: "change_sale", saleId: id, details, client }, now)
      return view(after, await live.now(), true)
    },

    async remove(id: number, client: string | null): Promise<void> {
      plannedOnly()
      const now = await live.now()
      const sale = named(id, now)
      if (now >= sale.startsAt) throw new Refusal("sale_started", `Sale ${id} has started: it can be ended (POST /admin/sales/${id}/end), not deleted.`)
      await store.remove(sale, { at: now, action: "delete_sale", saleId: id, details: { name: sale.name, starts_at: iso(sale.startsAt) }, client })
      onAction("delete_sale")
      await live.reload()
    },

    /** Pause, resume or end: for planned sales and for the current recurring one. */
    async control(id: number, what: "pause" | "resume" | "end", client: string | null): Promise<SaleView> {
      const now = await live.now()
      const sale = named(id, now)
      if (now >= closesAt(sale)) throw new Refusal("sale_ended", `Sale ${id} is over.`)
      const change: SaleChange = what === "end" ? { endedAt: now } : { paused: what === "pause" }
      const after = await changeSale(sale, change, { at: now, action: `${what}_sale`, saleId: id, details: {}, client }, now)
      return view(after, await live.now(), false)
    },

    actions: (options: { before?: number; saleId?: number; limit: number }) => store.actions(options),

    /** The next sale to open after now, for the live page. */
    async nextSale(): Promise<{ id: number; name: string; startsAt: number } | undefined> {
      const next = schedule().next(await live.now())
      return next && { id: next.id, name: next.name, startsAt: next.startsAt }
    },

    /** DELETE /admin/holds/{code}: kept first, so that no rebuild brings the hold back, then ended in the live state. */
    async releaseHold(code: string, client: string | null): Promise<Record<string, unknown>> {
      const saleId = saleOfCode(code)
      const sale = saleId === undefined ? undefined : schedule().get(saleId)
      if (!sale) throw new Refusal("code_not_found", "No live hold has this code.")
      const now = await live.now()
      await store.release(sale.id, code, { at: now, action: "release_hold", saleId: sale.id, details: { code }, client })
      onAction("release_hold")
      const result = await live.release(sale, code)
      if (result.kind === "bought") throw new Refusal("code_used", "This code was bought: a sale is not undone by releasing its hold.")
      if (result.kind !== "released") throw new Refusal("code_not_found", "No live hold has this code: it was never issued, its hold expired, or it was released already.")
      const { itemId, unit, userId, at } = result.hold
      return { message: "released", code, sale_id: sale.id, item_id: itemId, unit, user_id: userId, expired_at: iso(at) }
    },

    /** GET /admin/users/{user_id}: a user's purchases and live holds in a sale (the open one, else the latest that opened). */
    async user(userId: string, saleId: number | undefined): Promise<Record<string, unknown>> {
      const now = await live.now()
      const sale = saleId !== undefined ? named(saleId, now) : (schedule().current(now) ?? latest(now))
      if (!sale) throw new Refusal("not_found", "No sale has opened yet: name one with ?sale_id=.")
      const { purchases, holds } = await store.userOf(sale.id, userId, now)
      const unit = (u: KeptUnit, time: string) => ({ item_id: u.itemId, name: nameOf(sale, u.itemId), unit: u.unit, code: u.code, [time]: iso(u.at) })
      return { user_id: userId, sale_id: sale.id, sale_name: sale.name, purchases: purchases.map((u) => unit(u, "purchased_at")), holds: holds.map((u) => unit(u, "expires_at")) }
    },

    /** GET /admin/sales/{id}/orders: the sale and its purchases in batches, straight from the store; the export is an action, kept first. */
    async orders(id: number, format: string, client: string | null): Promise<{ sale: Sale; batches: AsyncIterable<KeptUnit[]> }> {
      const now = await live.now()
      const sale = named(id, now)
      await store.record({ at: now, action: "export_orders", saleId: sale.id, details: { format }, client })
      onAction("export_orders")
      return { sale, batches: store.orders(sale.id) }
    },

    /** GET /admin/sales/{id}/report. */
    async report(id: number): Promise<Record<string, unknown>> {
      const now = await live.now()
      const sale = named(id, now)
      const [rows, audit] = await Promise.all([store.report(sale.id), store.latestAudit(sale.id)])
      let sold = 0
      let revenue = 0
      let priced = false
      const items = rows.items
        .sort((a, b) => a.itemId - b.itemId)
        .map((r) => {
          const position = sale.items.position(r.itemId)
          const item = position >= 0 ? sale.items.at(position) : undefined
          sold += r.sold
          if (item?.price !== undefined) {
            priced = true
            revenue += item.price * r.sold
          }
          return { id: r.itemId, name: item?.name ?? null, price: item?.price ?? null, stock: item?.stock ?? null, sold: r.sold, first_sale_at: iso(r.first), last_sale_at: iso(r.last) }
        })
      const first = rows.items.length > 0 ? Math.min(...rows.items.map((r) => r.first)) : null
      const last = rows.items.length > 0 ? Math.max(...rows.items.map((r) => r.last)) : null
      return {
        sale_id: sale.id,
        name: sale.name,
        starts_at: iso(sale.startsAt),
        closes_at: iso(closesAt(sale)),
        units_total: sale.items.units,
        units_sold: sold,
        // Prices are the sale's (or the catalog's) now, in the shop's currency; items without one are left out.
        revenue: priced ? Math.round(revenue * 100) / 100 : null,
        first_sale_at: iso(first),
        sold_out_at: sold >= sale.items.units && sold > 0 ? iso(last) : null,
        attempts: { checkouts: rows.checkouts, purchases: rows.purchases },
        holds_released: rows.released,
        items,
        audit: audit ? auditView(audit) : null,
        audit_due_at: audit ? null : iso(purchasableUntil(sale)),
      }
    },

    /** POST /admin/sales/{id}/audit: the audit again, now; only once the sale is over, its holds expired and written. */
    async audit(id: number, client: string | null): Promise<Record<string, unknown>> {
      const now = await live.now()
      const sale = named(id, now)
      if (now < purchasableUntil(sale)) throw new Refusal("not_auditable", `Sale ${id} can be audited once it is over and its last hold has expired: from ${iso(purchasableUntil(sale))}.`)
      if (!(await live.settled(sale))) throw new Refusal("not_auditable", `Some of sale ${id}'s decisions are still being written to the durable store; try again in a few seconds.`)
      const audit = await audits.run(sale, "operator", now)
      if (!audit) throw new Refusal("not_auditable", `Sale ${id}'s live state is no longer kept (it is forgotten a day after its last hold could be bought): there is nothing to compare with.`)
      await store.record({ at: now, action: "audit_sale", saleId: sale.id, details: { differences: audit.count }, client })
      onAction("audit_sale")
      return auditView(audit)
    },

    /** Called every few seconds by the engine: the audits of sales that are over (sale/audits.ts). */
    maintain: () => audits.maintain(),

    /** The sales whose latest audit of the last day found differences, and every such audit's count, for /health and /metrics. */
    auditStatus: () => audits.status(),
  }

  /** The sale an operator names: a planned one, or a recurring one that has opened or is the next to; else 404. */
  function named(id: number, now: number): Sale {
    const sale = Number.isSafeInteger(id) ? schedule().get(id) : undefined
    if (!sale || (sale.kind === "recurring" && sale.startsAt > now && sale.id !== schedule().next(now)?.id)) throw new Refusal("not_found", `There is no sale ${id}.`)
    return sale
  }

  /** The latest sale that opened before `now`. */
  function latest(now: number): Sale | undefined {
    const s = schedule()
    if (s.kind === "recurring") return s.get((s.next(now)?.id ?? 1) - 1)
    return [...s.sales].reverse().find((sale) => sale.startsAt <= now)
  }

  function nameOf(sale: Sale, itemId: number): string | null {
    const position = sale.items.position(itemId)
    return position >= 0 ? sale.items.at(position).name : null
  }


}


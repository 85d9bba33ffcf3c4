/**
 * The operator API's backend, the same for both engines: it checks a request against the sales, keeps the
 * change (and the action) in the durable store before anything is answered, and has the engine apply it to the
 * live state. A change that only tightens (pause, end, a lower stock) reaches the live state first, so that
 * nothing it forbids is decided while it spreads; one that loosens (resume, more stock) only once it is kept.
 */
import type { ErrorCode } from "../errors"
import { fieldsMessage, type Fields } from "./admin"
import type { Action, ActionRow, KeptSales, KeptUnit, NewSale, ReportRows, SaleChange } from "./definitions"
import { auditSale, auditView, type Audit, type Counters, type LiveUnit, type LiveView } from "./audit"
import { saleOfCode } from "./codes"
import type { Health } from "./engine"
import type { SaleSnapshot } from "./records"
import { overlapping, type Schedule } from "./schedule"
import { closesAt, purchasableUntil, type Sale } from "./sales"

/** An operator request the sales refuse: answered with its code (4xx) and a sentence; `extra` goes into the body. */
export class Refusal extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message)
  }
}

export const badFields = (fields: Fields) => new Refusal("invalid_request", fieldsMessage(fields), { fields })

/** A sale's counts as the live state has them (units), or the durable store for a sale no longer live. */
export type SaleCounts = { sold: number; reserved: number; checkouts: { accepted: number; rejected: number }; purchases: { accepted: number; rejected: number } }

/** The durable side: PostgreSQL (postgres/sales.ts) or SQLite (embedded/sqlite.ts). Each write is one transaction, its action included. */
export type SalesStore = {
  /** The sales changed since a revision (0: all of them). */
  load(since?: number): Promise<KeptSales>
  /** The newest revision of any sale: polled to notice another instance's change. */
  revision(): Promise<number>
  /** Refuses (returns the overlapping ids) when the window overlaps a planned sale; else keeps the sale with a new id and revision. */
  create(sale: NewSale, action: Action): Promise<{ sale: Sale } | { overlaps: number[] }>
  /** Keeps `after` (a change of `before`, or of a recurring sale never changed before) with a new revision; refuses an overlap of a new end. */
  change(before: Sale, change: SaleChange, action: Action): Promise<{ sale: Sale } | { overlaps: number[] }>
  remove(sale: Sale, action: Action): Promise<void>
  record(action: Action): Promise<void>
  actions(options: { before?: number; saleId?: number; limit: number }): Promise<ActionRow[]>
  counts(saleId: number): Promise<SaleCounts>
  /** What the store kept of a sale, with the holds live at `now`: what a rebuild reads, and the audit's other side. */
  snapshot(saleId: number, now: number): Promise<SaleSnapshot>
  /** Keeps an operator's release of a hold, with the action, so that no rebuild brings the hold back. */
  release(saleId: number, code: string, action: Action): Promise<void>
  /** A user's purchases and live holds in a sale, as kept. */
  userOf(saleId: number, userId: string, now: number): Promise<{ purchases: KeptUnit[]; holds: KeptUnit[] }>
  /** The sale's purchases, oldest first, in batches read with a cursor: never the whole result in memory. */
  orders(saleId: number): AsyncIterable<KeptUnit[]>
  report(saleId: number): Promise<ReportRows>
  keepAudit(audit: Audit): Promise<void>
  latestAudit(saleId: number): Promise<Audit | undefined>
  /** The latest audit of each sale audited since `since`. */
  recentAudits(since: number): Promise<Audit[]>
}

/** The live side: Redis (redis/operations.ts) or the embedded engine's memory. */
export type LiveSales = {
  /** Now, by the clock that decides (Redis TIME for the Redis engine). */
  now(): Promise<number>
  /** Runs `work` while no other instance changes this sale's live settings. */
  exclusive<T>(sale: Sale, work: () => Promise<T>): Promise<T>
  /**
   * Applies what tightens in `change` at once (pause, an end now, a lower stock or limit), before it is kept.
   * Returns the time it took effect, or refuses a stock below a unit sold or held.
   */
  restrict(sale: Sale, change: SaleChange): Promise<{ now: number } | Refusal>
  /**
   * Applies a sale's definition as kept, with its revision (an older one than the live state's is ignored).
   * `changed`: the items whose stock the change named; every item's when omitted.
   */
  apply(sale: Sale, changed?: number[]): Promise<void>
  /** The live counts of a sale the live state has, or undefined. */
  counts(sale: Sale): Promise<SaleCounts | undefined>
  /** Units available per item of a live sale (by position), or undefined. */
  available(sale: Sale): Promise<number[] | undefined>
  /** Takes the store's sales again (after a change here, so that this instance knows it at once). */
  reload(): Promise<void>
  schedule(): Schedule
  /** Ends a live hold by hand: its unit back to stock, its user's counts down. */
  release(sale: Sale, code: string): Promise<{ kind: "released"; hold: LiveUnit } | { kind: "bought" | "none" }>
  /** The sale as the live state has it, for the audit; undefined once the live state no longer has it. */
  view(sale: Sale): Promise<LiveView | undefined>
  /** Whether nothing of the sale waits to be written (a journal entry, a commit). */
  settled(sale: Sale): Promise<boolean>
  /** Runs `work` unless another instance runs the same key now (then undefined). */
  once<T>(key: string, work: () => Promise<T>): Promise<T | undefined>
}

export type SaleView = Record<string, unknown>

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export type Operator = ReturnType<typeof createOperator>

/** How long an audit that found a difference keeps /health degraded and shows in /metrics. */
const auditWindowMs = 24 * 3600_000

export type OperatorOptions = {
  /** Counts each operator action kept (/metrics). */
  onAction?: (action: string) => void
  log?: (message: string) => void
}

export function createOperator(store: SalesStore, live: LiveSales, defaults: { userLimit: number; holdMs: number }, { onAction = () => {}, log = console.error }: OperatorOptions = {}) {
  const schedule = () => live.schedule()
  /** The latest audit of each sale audited in the last day (every instance's, read from the store). */
  let audits = new Map<number, Audit>()
  let auditsReadAt = 0
  /** Sales this process knows to be audited (or to have nothing to audit). */
  const audited = new Set<number>()

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
      const audit = await runAudit(sale, "operator", now)
      if (!audit) throw new Refusal("not_auditable", `Sale ${id}'s live state is no longer kept (it is forgotten a day after its last hold could be bought): there is nothing to compare with.`)
      await store.record({ at: now, action: "audit_sale", saleId: sale.id, details: { differences: audit.count }, client })
      onAction("audit_sale")
      return auditView(audit)
    },

    /**
     * Called every few seconds by the engine: audits each sale once it is over, its holds have expired and nothing
     * of it waits to be written (one instance does it), and reads every instance's recent audits.
     */
    async maintain(): Promise<void> {
      const now = await live.now()
      if (Date.now() - auditsReadAt > 5000) {
        audits = new Map((await store.recentAudits(now - auditWindowMs)).map((a) => [a.saleId, a]))
        auditsReadAt = Date.now()
        for (const id of audits.keys()) audited.add(id)
      }
      for (const sale of settledSales(now)) {
        if (audited.has(sale.id) || !(await live.settled(sale))) continue
        await live.once(`audit:${sale.id}`, async () => {
          if (await store.latestAudit(sale.id)) return audited.add(sale.id)
          const audit = await runAudit(sale, "auto", now, true)
          audited.add(sale.id)
          if (audit?.count) log(`sale ${sale.id}: the audit found ${audit.count} difference(s) between the live state and the durable store (GET /admin/sales/${sale.id}/report)`)
        })
      }
    },

    /** The sales whose latest audit of the last day found differences, and every such audit's count, for /health and /metrics. */
    auditStatus(): { differing: number[]; counts: [saleId: number, differences: number][] } {
      const at = Date.now()
      const recent = [...audits.values()].filter((a) => at - a.at < auditWindowMs)
      return { differing: recent.filter((a) => a.count > 0).map((a) => a.saleId), counts: recent.map((a) => [a.saleId, a.count]) }
    },
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

  /** The sales whose last hold expired in the last day: planned ones, or the latest recurring ones. */
  function settledSales(now: number): Sale[] {
    const s = schedule()
    const recent = (sale: Sale | undefined) => sale !== undefined && purchasableUntil(sale) <= now && purchasableUntil(sale) > now - auditWindowMs
    if (s.kind === "planned") return s.sales.filter(recent)
    const next = s.next(now)?.id ?? 0
    return [next - 1, next - 2, next - 3].map((id) => s.get(id)).filter(recent) as Sale[]
  }

  /** Compares the live state with the store and keeps the result; undefined when the live state no longer has the sale. */
  async function runAudit(sale: Sale, trigger: Audit["trigger"], now: number, skipEmpty = false): Promise<Audit | undefined> {
    const view = await live.view(sale)
    if (!view) return undefined
    const kept = await store.snapshot(sale.id, now)
    const nothing = (c: Counters) => c.checkouts.accepted + c.checkouts.rejected + c.purchases.accepted + c.purchases.rejected === 0
    // A sale in which nothing was decided has nothing to audit.
    if (skipEmpty && nothing(view.counters) && nothing(kept) && view.sold.length === 0 && kept.sold.length === 0) return undefined
    const audit = auditSale(sale.id, view, kept, now, trigger)
    await store.keepAudit(audit)
    audits.set(sale.id, audit)
    return audit
  }
}

/** /health with the audits: degraded while the latest audit of a sale of the last day found a difference. */
export function withAudits(health: Health, status: ReturnType<Operator["auditStatus"]>): Health {
  if (status.differing.length === 0) return health
  const checks = { ...health.checks, audit: { status: "differences", sales: status.differing, report: `GET /admin/sales/${status.differing[0]}/report` } }
  return { status: health.status === "down" ? "down" : "degraded", checks }
}

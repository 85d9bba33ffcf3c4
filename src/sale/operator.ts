/**
 * The operator API's backend, the same for both engines: it checks a request against the sales, keeps the
 * change (and the action) in the durable store before anything is answered, and has the engine apply it to the
 * live state. A change that only tightens (pause, end, a lower stock) reaches the live state first, so that
 * nothing it forbids is decided while it spreads; one that loosens (resume, more stock) only once it is kept.
 */
import type { ErrorCode } from "../errors"
import { fieldsMessage, type Fields } from "./admin"
import type { Action, ActionRow, KeptSales, NewSale, SaleChange } from "./definitions"
import { overlapping, type Schedule } from "./schedule"
import { closesAt, type Sale } from "./sales"

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
}

export type SaleView = Record<string, unknown>

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString())

export type Operator = ReturnType<typeof createOperator>

export function createOperator(store: SalesStore, live: LiveSales, defaults: { userLimit: number; holdMs: number }) {
  const schedule = () => live.schedule()

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

  /** The sale an operator names, or 404. */
  function named(id: number): Sale {
    const sale = Number.isSafeInteger(id) ? schedule().get(id) : undefined
    if (!sale || (schedule().kind === "recurring" && sale.kind === "recurring" && !isCurrentOrKnown(sale))) throw new Refusal("not_found", `There is no sale ${id}.`)
    return sale
  }

  /** On the recurring schedule only the current period's sale (and those an operator changed) can be named. */
  const isCurrentOrKnown = (sale: Sale) => schedule().sales.some((s) => s.id === sale.id) || sale.id === schedule().current(Date.now())?.id || sale.id === schedule().next(Date.now())?.id

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
      const sale = named(id)
      return view(sale, await live.now(), true)
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
      await live.reload()
      return view(kept.sale, now, true)
    },

    async change(id: number, parse: (sale: Sale, now: number) => { change: SaleChange } | { fields: Fields }, client: string | null): Promise<SaleView> {
      plannedOnly()
      const sale = named(id)
      const now = await live.now()
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
      const sale = named(id)
      const now = await live.now()
      if (now >= sale.startsAt) throw new Refusal("sale_started", `Sale ${id} has started: it can be ended (POST /admin/sales/${id}/end), not deleted.`)
      await store.remove(sale, { at: now, action: "delete_sale", saleId: id, details: { name: sale.name, starts_at: iso(sale.startsAt) }, client })
      await live.reload()
    },

    /** Pause, resume or end: for planned sales and for the current recurring one. */
    async control(id: number, what: "pause" | "resume" | "end", client: string | null): Promise<SaleView> {
      const sale = named(id)
      const now = await live.now()
      if (now >= closesAt(sale)) throw new Refusal("sale_ended", `Sale ${id} is over.`)
      const change: SaleChange = what === "end" ? { endedAt: now } : { paused: what === "pause" }
      const after = await changeSale(sale, change, { at: now, action: `${what}_sale`, saleId: id, details: {}, client }, now)
      return view(after, await live.now(), false)
    },

    actions: (options: { before?: number; saleId?: number; limit: number }) => store.actions(options),
    record: (action: Action) => store.record(action),
  }
}

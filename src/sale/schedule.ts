/**
 * Which sale is open at a moment, and which opens next: the recurring schedule (one sale per period) or the
 * planned sales an operator created (which never overlap). Pure: built from what the durable store keeps,
 * and rebuilt when it changes.
 */
import { closesAt, isOpen, recurringSale, recurringSaleId, type Recurring, type RecurringOverride, type Sale } from "./sales"

export type Schedule = {
  readonly kind: "recurring" | "planned"
  /** The sale open at `t` (paused or not), if any. */
  current(t: number): Sale | undefined
  /** The first sale that opens after `t`, if any is planned. */
  next(t: number): Sale | undefined
  /** Any sale by id: a planned one (past, current or scheduled; not a deleted one), or a recurring period. */
  get(id: number): Sale | undefined
  /** The planned sales (ordered by start), or the recurring ones an operator changed. */
  readonly sales: readonly Sale[]
}

/** The recurring schedule, with the pauses and ends operators made (by sale id). */
export function recurringSchedule(recurring: Recurring, overrides: ReadonlyMap<number, RecurringOverride> = new Map()): Schedule {
  // A sale's items can be many (a catalog of 100,000): build each sale once.
  const cache = new Map<number, Sale>()
  const get = (id: number) => {
    let sale = cache.get(id)
    if (!sale) {
      sale = recurringSale(id, recurring, overrides.get(id))
      if (cache.size >= 8) cache.delete(cache.keys().next().value!)
      cache.set(id, sale)
    }
    return sale
  }
  return {
    kind: "recurring",
    current(t) {
      const sale = get(recurringSaleId(t, recurring.periodMs))
      return isOpen(sale, t) ? sale : undefined
    },
    next: (t) => get(recurringSaleId(t, recurring.periodMs) + 1),
    get: (id) => (Number.isSafeInteger(id) && id >= 0 ? get(id) : undefined),
    sales: [...overrides.keys()].map(get),
  }
}

/** The planned schedule: the sales an operator created, none overlapping another. */
export function plannedSchedule(sales: readonly Sale[]): Schedule {
  const ordered = [...sales].sort((a, b) => a.startsAt - b.startsAt)
  const byId = new Map(ordered.map((s) => [s.id, s]))
  return {
    kind: "planned",
    current: (t) => ordered.find((s) => isOpen(s, t)),
    next: (t) => ordered.find((s) => s.startsAt > t && closesAt(s) > s.startsAt),
    get: (id) => byId.get(id),
    sales: ordered,
  }
}

/** The planned sales whose window overlaps [startsAt, endsAt), other than `except`: sales never overlap. */
export function overlapping(schedule: Schedule, startsAt: number, endsAt: number, except?: number): Sale[] {
  return schedule.sales.filter((s) => s.id !== except && s.kind === "planned" && s.startsAt < endsAt && startsAt < closesAt(s))
}

/**
 * What an engine knows of the kept sales, brought up to date with what changed since its revision: the
 * schedule is built from it (see book.ts and the embedded engine).
 */
export type Known = { planned: Map<number, Sale>; overrides: Map<number, RecurringOverride>; rev: number }

export const nothingKnown = (): Known => ({ planned: new Map(), overrides: new Map(), rev: 0 })

export function merge(known: Known, changes: { planned: Sale[]; overrides: ReadonlyMap<number, RecurringOverride>; deleted: number[]; rev: number }): Known {
  for (const sale of changes.planned) known.planned.set(sale.id, sale)
  for (const [id, override] of changes.overrides) known.overrides.set(id, override)
  for (const id of changes.deleted) {
    known.planned.delete(id)
    known.overrides.delete(id)
  }
  known.rev = Math.max(known.rev, changes.rev)
  return known
}

/** The schedule of what is known: the planned sales, or the recurring ones with their operators' changes. */
export const scheduleOf = (kind: "recurring" | "planned", recurring: Recurring, known: Known): Schedule =>
  kind === "planned" ? plannedSchedule([...known.planned.values()]) : recurringSchedule(recurring, known.overrides)

/**
 * The sales this instance knows, as PostgreSQL keeps them: the planned sales, or the recurring schedule with the
 * pauses and ends operators made. Every instance reads the newest revision once a second and loads the sales
 * again when another instance changed one, so a change reaches every instance within a second; the decisions
 * themselves read a sale's settings from its own Redis keys (lua/prelude.lua), not from here.
 */
import type { SalesStore } from "../sale/stores"
import { merge, nothingKnown, scheduleOf, type Schedule } from "../sale/schedule"
import { closesAt, purchasableUntil, recurringSaleId, type Recurring, type Sale } from "../sale/sales"

export type Book = ReturnType<typeof createBook>

export function createBook(store: SalesStore, kind: "recurring" | "planned", recurring: Recurring) {
  const known = nothingKnown()
  let schedule: Schedule = scheduleOf(kind, recurring, known)
  let rev = -1

  /** Loads what changed since the last load (everything the first time). */
  async function load(): Promise<void> {
    const changes = await store.load(Math.max(rev, 0))
    merge(known, changes)
    schedule = scheduleOf(kind, recurring, known)
    rev = changes.rev
  }

  return {
    schedule: () => schedule,
    /** Whether the sales were read from the store at least once (the planned schedule needs that to sell). */
    get loaded() {
      return rev >= 0
    },
    load,
    /** Loads the sales again if another instance changed one since. */
    async poll(): Promise<void> {
      if ((await store.revision()) !== rev) await load()
    },
    /** The sales whose holds may still be live at `t`: the open one, and those closed less than their hold time ago. */
    recent(t: number): Sale[] {
      if (kind === "recurring") {
        const id = recurringSaleId(t, recurring.periodMs)
        return [schedule.get(id)!, schedule.get(id - 1)!].filter((s) => s && purchasableUntil(s) > t)
      }
      return schedule.sales.filter((s) => s.startsAt <= t && purchasableUntil(s) > t && closesAt(s) > s.startsAt)
    },
  }
}

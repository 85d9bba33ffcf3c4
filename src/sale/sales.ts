/**
 * What a sale is: its window, its limits and its items, each with a stock of units. Recurring sales are
 * computed from the configuration (one per period, aligned to the epoch); planned sales are created by an
 * operator and kept in the durable store. Pure: no I/O.
 */
import { type Catalog, type Item, type SaleItem } from "./catalog"

/** A sale's items: their ids, in the order they were given, with their units and per-user limits. */
export type SaleItems = {
  /** How many items. */
  size: number
  /** Units of every item together. */
  units: number
  /** The item's place (0-based) among the sale's items, or -1 if the sale has no such item. */
  position(id: number): number
  /** The item at a place. */
  at(position: number): SaleItem
  /** Set when the items are ids 1..size, every one with this stock and per-user limit: kept without a record per item. */
  uniform: { stock: number; perUser: number } | undefined
}

export type SaleKind = "recurring" | "planned"

export type Sale = {
  id: number
  kind: SaleKind
  name: string
  /** Unix ms. */
  startsAt: number
  endsAt: number
  /** When an operator ended it, if one did: it is over from then, exactly as at its end. */
  endedAt: number | null
  paused: boolean
  /** Purchases plus live holds one user may have in this sale. */
  userLimit: number
  holdMs: number
  items: SaleItems
  /** Bumped by every change an operator makes (one counter for all sales): an older revision never overwrites a newer one. */
  rev: number
}

/** The settings of a sale that the deciding side (Redis scripts, the embedded rules) reads at every decision. */
export type Settings = Pick<Sale, "startsAt" | "endsAt" | "endedAt" | "paused" | "userLimit" | "holdMs" | "rev">

export const settingsOf = (sale: Sale): Settings => ({ startsAt: sale.startsAt, endsAt: sale.endsAt, endedAt: sale.endedAt, paused: sale.paused, userLimit: sale.userLimit, holdMs: sale.holdMs, rev: sale.rev })

/** When the sale stops taking checkouts: its end, or the moment an operator ended it. */
export const closesAt = (sale: Pick<Sale, "endsAt" | "endedAt">) => (sale.endedAt === null ? sale.endsAt : Math.min(sale.endsAt, sale.endedAt))

/** Whether checkouts are taken at `t` (paused or not: a paused sale is open, and refuses them with sale_paused). */
export const isOpen = (sale: Pick<Sale, "startsAt" | "endsAt" | "endedAt">, t: number) => t >= sale.startsAt && t < closesAt(sale)

/** The last moment a hold of this sale can be bought: one granted just before it closes lives on. */
export const purchasableUntil = (sale: Pick<Sale, "endsAt" | "endedAt" | "holdMs">) => closesAt(sale) + sale.holdMs

/** What a shopper sees of an item. */
export const publicItem = ({ id, name, image, price }: SaleItem): Item => (price === undefined ? { id, name, image } : { id, name, image, price })

/** The items of a list (a planned sale's, or the shop's catalog), in its order. */
export function listedItems(list: readonly SaleItem[]): SaleItems {
  const positions = new Map<number, number>()
  let units = 0
  list.forEach((item, i) => {
    positions.set(item.id, i)
    units += item.stock
  })
  const first = list[0]
  const uniform = first && list.every((item, i) => item.id === i + 1 && item.stock === first.stock && item.perUser === first.perUser) ? { stock: first.stock, perUser: first.perUser } : undefined
  return { size: list.length, units, position: (id) => positions.get(id) ?? -1, at: (p) => list[p]!, uniform }
}

/** Ids 1..size from the recurring catalog: generated names (one unit each), or the shop's file. */
export function catalogItems(saleId: number, size: number, catalog: Catalog): SaleItems {
  if (catalog.uniform) {
    const spec = catalog.itemOf(saleId, 1)
    return {
      size,
      units: size * spec.stock,
      position: (id) => (Number.isInteger(id) && id >= 1 && id <= size ? id - 1 : -1),
      at: (p) => catalog.itemOf(saleId, p + 1),
      uniform: { stock: spec.stock, perUser: spec.perUser },
    }
  }
  return listedItems(Array.from({ length: size }, (_, i) => catalog.itemOf(saleId, i + 1)))
}

/** The recurring schedule's settings: one sale per period, SALE_ITEMS items, the same limits in each. */
export type Recurring = { periodMs: number; saleItems: number; userLimit: number; holdMs: number; catalog: Catalog }

/** An operator's changes to a recurring sale: only pause, resume and end apply to one. */
export type RecurringOverride = { paused: boolean; endedAt: number | null; rev: number }

export const recurringSaleId = (t: number, periodMs: number) => Math.floor(t / periodMs)

/** Recurring sale `id`: the `id`-th period since the epoch. */
export function recurringSale(id: number, recurring: Recurring, override?: RecurringOverride): Sale {
  return {
    id,
    kind: "recurring",
    name: `Sale ${id}`,
    startsAt: id * recurring.periodMs,
    endsAt: (id + 1) * recurring.periodMs,
    endedAt: override?.endedAt ?? null,
    paused: override?.paused ?? false,
    userLimit: recurring.userLimit,
    holdMs: recurring.holdMs,
    items: catalogItems(id, recurring.saleItems, recurring.catalog),
    rev: override?.rev ?? 0,
  }
}

/** Planned sales' ids start here: recurring ids (seconds since the epoch at most) never reach it, so the two never collide. */
export const firstPlannedId = 1_000_000_000_001

/**
 * The storefront's snapshot of a sale (GET /items) and /status's view of it, from what an engine knows: the
 * sale's definition and, per item, the units neither sold nor held. Pure.
 */
import type { SaleState as StatusState, SaleStatus, Shelf, ShelfItem } from "./engine"
import { publicItem, type Sale } from "./sales"

/**
 * A snapshot of `sale`'s items with their available units (by position; all of the stock when not given, as
 * before a sale opens). Its version is a hash of the sale, its revision and every available count, so equal
 * snapshots have equal versions on every instance.
 */
export function shelfOf(sale: Sale | undefined, available: (position: number) => number | undefined): Shelf {
  if (!sale) return { saleId: null, version: "none", size: 0, at: () => undefined as never, position: () => -1 }
  const counts = new Uint32Array(sale.items.size)
  for (let i = 0; i < counts.length; i++) counts[i] = available(i) ?? sale.items.at(i).stock
  const version = `${sale.id}-${sale.rev}-${Bun.hash(counts).toString(36)}`
  return {
    saleId: sale.id,
    version,
    size: counts.length,
    at(position): ShelfItem {
      const item = sale.items.at(position)
      return { ...publicItem(item), stock: item.stock, available: counts[position]! }
    },
    position: (id) => sale.items.position(id),
  }
}

type Stats = { sold: number; held: number; units: number; checkoutsOk: number; checkoutsRejected: number; purchasesOk: number; purchasesRejected: number }

/** /status's view: the open sale with its counters, or the next planned one (counters zero), or none. */
export function stateOf(sale: Sale | undefined, now: number, stats: Stats | undefined, paused = false): SaleStatus {
  const zero = { accepted: 0, rejected: 0 }
  if (!sale || !stats) return { sale, state: sale ? "scheduled" : "none", now, itemsTotal: sale?.items.units ?? 0, itemsSold: 0, itemsReserved: 0, checkouts: zero, purchases: zero }
  const state: StatusState = stats.sold >= stats.units ? "sold_out" : paused ? "paused" : "active"
  return {
    sale,
    state,
    now,
    itemsTotal: stats.units,
    itemsSold: stats.sold,
    itemsReserved: stats.held,
    checkouts: { accepted: stats.checkoutsOk, rejected: stats.checkoutsRejected },
    purchases: { accepted: stats.purchasesOk, rejected: stats.purchasesRejected },
  }
}

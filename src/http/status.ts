/** The /status body from an engine's SaleStatus, shared by GET /status, the live feed and /metrics. */
import type { Engine, Health, SaleStatus } from "../sale/engine"
import { closesAt } from "../sale/sales"
import { iso } from "./respond"

export function statusBody(s: SaleStatus) {
  const sale = s.sale
  const ends = sale ? closesAt(sale) : undefined
  return {
    sale_id: sale?.id ?? null,
    name: sale?.name ?? null,
    started_at: sale ? iso(sale.startsAt) : null,
    ends_at: ends === undefined ? null : iso(ends),
    seconds_remaining: ends === undefined || s.state === "scheduled" ? 0 : Math.max(0, Math.ceil((ends - s.now) / 1000)),
    items_total: s.itemsTotal,
    items_sold: s.itemsSold,
    items_reserved: s.itemsReserved,
    items_available: Math.max(0, s.itemsTotal - s.itemsSold - s.itemsReserved),
    checkouts: s.checkouts,
    purchases: s.purchases,
    sale_status: s.state,
  }
}

export type StatusBody = ReturnType<typeof statusBody>

/** One look at the engine: its sale status (or why it could not tell) and its health, taken at `at` (Unix ms). */
export type Sample = { at: number; status: SaleStatus | undefined; statusError: string | undefined; health: Health }

/**
 * Looks at the engine for many askers at once: callers while a look is under way share it, and a caller
 * that accepts a sample up to `maxAgeMs` old shares the last one (the live feed, once a second, for every watcher).
 */
export function sampler(engine: Engine, now = Date.now) {
  let last: Sample | undefined
  let taking: Promise<Sample> | undefined
  async function take(): Promise<Sample> {
    const [status, health] = await Promise.allSettled([engine.status(), engine.health()])
    return {
      at: now(),
      status: status.status === "fulfilled" ? status.value : undefined,
      statusError: status.status === "rejected" ? String((status.reason as Error)?.message ?? status.reason) : undefined,
      health: health.status === "fulfilled" ? health.value : { status: "down", checks: { error: String((health.reason as Error)?.message ?? health.reason) } },
    }
  }
  return {
    sample(maxAgeMs = 0): Promise<Sample> {
      if (last && now() - last.at < maxAgeMs) return Promise.resolve(last)
      taking ??= take().then((s) => {
        last = s
        taking = undefined
        return s
      })
      return taking
    },
  }
}

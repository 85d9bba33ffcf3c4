/** The /status body from an engine's SaleStatus, shared by GET /status, the live feed and /metrics. */
import type { Config } from "../config"
import { saleEndMs, saleStartMs } from "../sale/clock"
import type { Engine, Health, SaleStatus } from "../sale/engine"
import { iso } from "./respond"

export function statusBody(s: SaleStatus, config: Pick<Config, "saleItems" | "salePeriodSeconds">) {
  const periodMs = config.salePeriodSeconds * 1000
  return {
    sale_id: s.saleId,
    started_at: iso(saleStartMs(s.saleId, periodMs)),
    ends_at: iso(saleEndMs(s.saleId, periodMs)),
    seconds_remaining: Math.max(0, Math.ceil((saleEndMs(s.saleId, periodMs) - s.now) / 1000)),
    items_total: config.saleItems,
    items_sold: s.itemsSold,
    items_reserved: s.itemsReserved,
    items_available: Math.max(0, config.saleItems - s.itemsSold - s.itemsReserved),
    checkouts: s.checkouts,
    purchases: s.purchases,
    sale_status: s.itemsSold >= config.saleItems ? ("sold_out" as const) : ("active" as const),
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

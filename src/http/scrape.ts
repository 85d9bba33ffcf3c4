/** The gauges /metrics reads at scrape time from the engine: the sale, the durable store's backlog and health. */
import { gauge, labelSets } from "../metrics"
import { statusBody, type Sample } from "./status"
import { version } from "../version"

/** The backlog the engine's health reports: the Redis ledger's stream, or the embedded engine's uncommitted rows. */
export function backlogOf(checks: Record<string, unknown>): { entries: number; ageSeconds: number } {
  const ledger = checks.ledger as { backlog_entries?: number; oldest_unwritten_seconds?: number } | undefined
  const sqlite = checks.sqlite as { uncommitted?: number } | undefined
  return { entries: ledger?.backlog_entries ?? sqlite?.uncommitted ?? 0, ageSeconds: ledger?.oldest_unwritten_seconds ?? 0 }
}

const healthStates = ["ok", "degraded", "down"] as const

export type ProcessExtras = { watchers: number; rateLimitEntries: { user: number; ip: number } }
export type ScrapeExtras = ProcessExtras & { engine: string; audits: [saleId: number, differences: number][] }

/** The gauges of this process alone, not the engine's: what one worker adds to another's scrape (src/worker.ts). */
export function processGauges(extras: ProcessExtras): string[] {
  const out: string[] = []
  gauge(out, "flashsale_live_watchers", "Browsers watching the live page (server-sent events) on this process (with WORKERS, on every worker).", [["", extras.watchers]])
  gauge(out, "flashsale_rate_limit_entries", "Clients tracked by admission control on this process (with WORKERS, on every worker), by bucket.", [['by="user"', extras.rateLimitEntries.user], ['by="ip"', extras.rateLimitEntries.ip]])
  return out
}

/** The families scrapeGauges reads from the engine, the same on every worker: with WORKERS, served once, unlabelled. */
export const engineFamilies = new Set(["flashsale_info", "flashsale_health_status", "flashsale_store_backlog_entries", "flashsale_store_backlog_age_seconds", "flashsale_audit_differences", "flashsale_status_up", "flashsale_sale_id", "flashsale_sale_seconds_remaining", "flashsale_sale_items", "flashsale_sale_decisions"])

export function scrapeGauges(sample: Sample, extras: ScrapeExtras): string[] {
  const out: string[] = []
  gauge(out, "flashsale_info", "Always 1; the labels say which engine and version this process runs.", [[`engine="${extras.engine}",version="${version}"`, 1]])
  const states = labelSets("status", healthStates)
  gauge(out, "flashsale_health_status", "1 for the engine's current health (as /health), 0 for the others.", healthStates.map((s, i) => [states[i]!, sample.health.status === s ? 1 : 0]))
  const backlog = backlogOf(sample.health.checks)
  gauge(out, "flashsale_store_backlog_entries", "Not yet in the durable store: journal entries, one per script call (Redis engine, engine-wide), or uncommitted decisions (embedded).", [["", backlog.entries]])
  gauge(out, "flashsale_store_backlog_age_seconds", "Age of the oldest decision not yet in the durable store.", [["", backlog.ageSeconds]])
  out.push(...processGauges(extras))
  gauge(out, "flashsale_audit_differences", "Differences the latest audit of each sale audited in the last day found between the live state and the durable store (0: none).", extras.audits.map(([id, n]) => [`sale_id="${id}"`, n]))
  gauge(out, "flashsale_status_up", "1 if the engine answered /status for this scrape, 0 if it could not.", [["", sample.status ? 1 : 0]])
  if (!sample.status) return out
  const s = statusBody(sample.status)
  // From the engine, so the same on every instance of a Redis deployment: aggregate with max(), not sum().
  gauge(out, "flashsale_sale_id", "The open sale (or the next planned one); -1 when none is planned.", [["", s.sale_id ?? -1]])
  gauge(out, "flashsale_sale_seconds_remaining", "Seconds until the current sale ends.", [["", s.seconds_remaining]])
  gauge(out, "flashsale_sale_items", "The open sale's units by state; the states add up to its stock.", [['state="sold"', s.items_sold], ['state="reserved"', s.items_reserved], ['state="available"', s.items_available]])
  gauge(out, "flashsale_sale_decisions", "The current sale's decisions so far, as /status counts them (every instance).", [
    ['decision="checkout",result="accepted"', s.checkouts.accepted],
    ['decision="checkout",result="rejected"', s.checkouts.rejected],
    ['decision="purchase",result="accepted"', s.purchases.accepted],
    ['decision="purchase",result="rejected"', s.purchases.rejected],
  ])
  return out
}

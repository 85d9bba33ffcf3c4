/**
 * When sales are audited (sale/audit.ts compares): each sale once, automatically, by one instance, once it is over,
 * its last hold has expired and nothing of it waits to be written; again whenever an operator asks. And the recent
 * results every instance reads from the store, for /health and /metrics.
 */
import { auditSale, type Audit, type Counters } from "./audit"
import type { Health } from "./engine"
import { purchasableUntil, type Sale } from "./sales"
import type { LiveSales, SalesStore } from "./stores"

/** How long an audit that found a difference keeps /health degraded and shows in /metrics. */
const auditWindowMs = 24 * 3600_000

export type AuditStatus = { differing: number[]; counts: [saleId: number, differences: number][] }

export function createAudits(store: SalesStore, live: LiveSales, log: (message: string) => void) {
  /** The latest audit of each sale audited in the last day (every instance's, read from the store). */
  let audits = new Map<number, Audit>()
  let auditsReadAt = 0
  /** Sales this process knows to be audited (or to have nothing to audit). */
  const audited = new Set<number>()

  /** The sales whose last hold expired in the last day: planned ones, or the latest recurring ones. */
  function settledSales(now: number): Sale[] {
    const s = live.schedule()
    const recent = (sale: Sale | undefined) => sale !== undefined && purchasableUntil(sale) <= now && purchasableUntil(sale) > now - auditWindowMs
    if (s.kind === "planned") return s.sales.filter(recent)
    const next = s.next(now)?.id ?? 0
    return [next - 1, next - 2, next - 3].map((id) => s.get(id)).filter(recent) as Sale[]
  }

  /** Compares the live state with the store and keeps the result; undefined when the live state no longer has the sale. */
  async function run(sale: Sale, trigger: Audit["trigger"], now: number, skipEmpty = false): Promise<Audit | undefined> {
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

  return {
    run,

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
          const audit = await run(sale, "auto", now, true)
          audited.add(sale.id)
          if (audit?.count) log(`sale ${sale.id}: the audit found ${audit.count} difference(s) between the live state and the durable store (GET /admin/sales/${sale.id}/report)`)
        })
      }
    },

    /** The sales whose latest audit of the last day found differences, and every such audit's count, for /health and /metrics. */
    status(): AuditStatus {
      const at = Date.now()
      const recent = [...audits.values()].filter((a) => at - a.at < auditWindowMs)
      return { differing: recent.filter((a) => a.count > 0).map((a) => a.saleId), counts: recent.map((a) => [a.saleId, a.count]) }
    },
  }
}

/** /health with the audits: degraded while the latest audit of a sale of the last day found a difference. */
export function withAudits(health: Health, status: AuditStatus): Health {
  if (status.differing.length === 0) return health
  const checks = { ...health.checks, audit: { status: "differences", sales: status.differing, report: `GET /admin/sales/${status.differing[0]}/report` } }
  return { status: health.status === "down" ? "down" : "degraded", checks }
}

/**
 * The embedded engine: sale state in memory, decided on the one JS thread, kept in SQLite.
 *
 * Group commit: everything decided in one turn of the event loop is written in one transaction,
 * and each answer goes out only after the transaction holding its row commits. An answer the
 * client saw therefore survives kill -9, and the cost per request stays small.
 */
import type { Config } from "../config"
import { metrics as processMetrics, type EngineMetrics } from "../metrics"
import { UnavailableError, type CheckoutResult, type Engine, type Health, type PurchaseResult, type SaleStatus } from "../sale/engine"
import { defaultRetentionMs, saleForgottenAtMs, saleIdAt, salePurchasableUntilMs } from "../sale/clock"
import { newCode as randomCode, saleOfCode } from "../sale/codes"
import type { DecisionRecord } from "../sale/records"
import * as rules from "../sale/rules"
import type { Store } from "./sqlite"

export type EmbeddedEngineOptions = {
  store: Store
  config: Pick<Config, "saleItems" | "userLimit" | "salePeriodSeconds" | "holdSeconds">
  /** The clock; Date.now in production, injected by tests. */
  now?: () => number
  /** How long a past sale stays in memory after its last hold could be bought. */
  retentionMs?: number
  /** Called when a commit fails: memory is ahead of the file, so the process should restart from the file. */
  onFatal?: (error: Error) => void
  log?: (message: string) => void
  /** Where commits and rebuilds are counted; the process's series by default. */
  metrics?: EngineMetrics
}

export type EmbeddedEngine = Engine & {
  /** Reads the sale after the current one into memory before it starts, as the maintenance timer does ahead of every boundary. */
  prepareNext(): void
  startMaintenance(): void
  /** Commits what is decided and not yet written, and stops the timers. */
  close(): void
}


export function createEmbeddedEngine(options: EmbeddedEngineOptions): EmbeddedEngine {
  const { store, config, now = Date.now, retentionMs = defaultRetentionMs, onFatal = () => {}, log = console.log, metrics = processMetrics } = options
  const periodMs = config.salePeriodSeconds * 1000
  const holdMs = config.holdSeconds * 1000
  const limits = { saleItems: config.saleItems, userLimit: config.userLimit, holdMs }
  const sales = new Map<number, rules.SaleState>()
  let failed: Error | undefined
  let pending: { record: DecisionRecord; settle: () => void; fail: (error: Error) => void }[] = []
  let timer: ReturnType<typeof setInterval> | undefined

  function saleState(saleId: number, at: number): rules.SaleState {
    let sale = sales.get(saleId)
    if (!sale) {
      const snapshot = store.load(saleId, at)
      sale = rules.restoreSale(saleId, snapshot)
      sales.set(saleId, sale)
      // A sale with anything kept was rebuilt from the file; a sale seen for the first time starts empty.
      if (snapshot.checkouts.accepted + snapshot.checkouts.rejected + snapshot.purchases.accepted + snapshot.purchases.rejected > 0) metrics.rebuilds.inc()
    }
    return sale
  }

  function commit(): void {
    const batch = pending
    pending = []
    if (batch.length === 0) return
    const started = performance.now()
    try {
      store.write(batch.map((p) => p.record))
      metrics.storeCommit.observe((performance.now() - started) / 1000, batch.length)
    } catch (error) {
      metrics.storeCommit.failed()
      failed = error as Error
      log(`embedded: cannot write to SQLite (${failed.message}); refusing to decide until restarted`)
      for (const p of batch) p.fail(new UnavailableError(`the embedded store cannot write: ${failed.message}`, 5))
      onFatal(failed)
      return
    }
    for (const p of batch) p.settle()
  }

  /** Resolves with `value` once `record` is committed. */
  function kept<T>(record: DecisionRecord, value: T): Promise<T> {
    return new Promise((resolve, reject) => {
      if (pending.push({ record, settle: () => resolve(value), fail: reject }) === 1) setImmediate(commit)
    })
  }

  function refuseIfFailed(): void {
    if (failed) throw new UnavailableError(`the embedded store cannot write: ${failed.message}`, 5)
  }

  async function checkout(userId: string, itemId: number): Promise<CheckoutResult> {
    refuseIfFailed()
    const at = now()
    const saleId = saleIdAt(at, periodMs)
    const decision = rules.checkout(saleState(saleId, at), at, itemId, userId, randomCode(saleId), limits)
    const { outcome } = decision
    const result: CheckoutResult =
      outcome === "reserved" || outcome === "repeated"
        ? { ok: true, repeated: outcome === "repeated", code: decision.code, saleId, itemId, expiresAt: decision.expiresAt }
        : { ok: false, error: outcome }
    return kept(decision.record, result)
  }

  async function purchase(code: string): Promise<PurchaseResult> {
    refuseIfFailed()
    const at = now()
    const saleId = saleOfCode(code)
    // As lua/purchase.lua: a sale that has not started, or one forgotten and past buying, decides nothing.
    if (saleId === undefined || saleId > saleIdAt(at, periodMs)) return { ok: false, error: "code_not_found" }
    if (!sales.has(saleId) && at >= salePurchasableUntilMs(saleId, periodMs, holdMs)) {
      const forgotten = at >= saleForgottenAtMs(saleId, periodMs, holdMs, retentionMs)
      if (forgotten || !store.known(saleId)) return { ok: false, error: "code_not_found" }
    }
    const decision = rules.purchase(saleState(saleId, at), at, code)
    const { outcome } = decision
    const result: PurchaseResult =
      outcome === "purchased" ? { ok: true, saleId, userId: decision.userId, itemId: decision.itemId, purchasedAt: decision.at } : { ok: false, error: outcome }
    return kept(decision.record, result)
  }

  async function status(): Promise<SaleStatus> {
    refuseIfFailed()
    const at = now()
    const sale = saleState(saleIdAt(at, periodMs), at)
    rules.sweep(sale, at)
    const s = sale.stats
    return {
      saleId: sale.saleId,
      now: at,
      itemsSold: s.sold,
      itemsReserved: s.held,
      checkouts: { accepted: s.checkoutsOk, rejected: s.checkoutsRejected },
      purchases: { accepted: s.purchasesOk, rejected: s.purchasesRejected },
    }
  }

  async function health(): Promise<Health> {
    const sqlite = failed ? { status: "down", error: failed.message } : { status: "ok", uncommitted: pending.length }
    return { status: failed ? "down" : "ok", checks: { engine: "embedded", sqlite } }
  }

  function prepareNext(): void {
    const at = now()
    saleState(saleIdAt(at, periodMs) + 1, at)
  }

  /** Releases expired holds of idle sales, reads the next sale in, and forgets sales past their retention. */
  function maintain(): void {
    const at = now()
    const current = saleIdAt(at, periodMs)
    prepareNext()
    for (const [saleId, sale] of sales) {
      rules.sweep(sale, at)
      if (saleId < current && saleForgottenAtMs(saleId, periodMs, holdMs, retentionMs) < at) sales.delete(saleId)
    }
  }

  return {
    name: "embedded",
    checkout,
    purchase,
    status,
    health,
    prepareNext,
    startMaintenance() {
      timer ??= setInterval(maintain, 250)
    },
    close() {
      clearInterval(timer)
      timer = undefined
      commit()
      store.close()
    },
  }
}

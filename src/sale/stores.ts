/**
 * What the operator API (sale/operator.ts) works on, each engine its own: the durable store of sales and the live
 * state that decides them; and the refusal either answers an operator with.
 */
import type { ErrorCode } from "../errors"
import { fieldsMessage, type Fields } from "./admin"
import type { Action, ActionRow, KeptSales, KeptUnit, NewSale, ReportRows, SaleChange } from "./definitions"
import type { Audit, LiveUnit, LiveView } from "./audit"
import type { SaleSnapshot } from "./records"
import type { Schedule } from "./schedule"
import type { Sale } from "./sales"

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
  /** What the store kept of a sale, with the holds live at `now`: what a rebuild reads, and the audit's other side. */
  snapshot(saleId: number, now: number): Promise<SaleSnapshot>
  /** Keeps an operator's release of a hold, with the action, so that no rebuild brings the hold back. */
  release(saleId: number, code: string, action: Action): Promise<void>
  /** A user's purchases and live holds in a sale, as kept. */
  userOf(saleId: number, userId: string, now: number): Promise<{ purchases: KeptUnit[]; holds: KeptUnit[] }>
  /** The sale's purchases, oldest first, in batches read with a cursor: never the whole result in memory. */
  orders(saleId: number): AsyncIterable<KeptUnit[]>
  report(saleId: number): Promise<ReportRows>
  keepAudit(audit: Audit): Promise<void>
  latestAudit(saleId: number): Promise<Audit | undefined>
  /** The latest audit of each sale audited since `since`. */
  recentAudits(since: number): Promise<Audit[]>
}

/** The live side: Redis (redis/live.ts) or the embedded engine's memory. */
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
  /** Ends a live hold by hand: its unit back to stock, its user's counts down. */
  release(sale: Sale, code: string): Promise<{ kind: "released"; hold: LiveUnit } | { kind: "bought" | "none" }>
  /** The sale as the live state has it, for the audit; undefined once the live state no longer has it. */
  view(sale: Sale): Promise<LiveView | undefined>
  /** Whether nothing of the sale waits to be written (a journal entry, a commit). */
  settled(sale: Sale): Promise<boolean>
  /** Runs `work` unless another instance runs the same key now (then undefined). */
  once<T>(key: string, work: () => Promise<T>): Promise<T | undefined>
}

/** What the HTTP layer needs from a sale engine. Expected outcomes are values; only "cannot decide now" throws (UnavailableError). */
import type { CheckoutOutcome, PurchaseOutcome } from "./outcomes"

export type CheckoutResult =
  | { ok: true; repeated: boolean; code: string; saleId: number; itemId: number; expiresAt: number }
  | { ok: false; error: Exclude<CheckoutOutcome, "reserved" | "repeated"> }

export type PurchaseResult =
  | { ok: true; saleId: number; userId: string; itemId: number; purchasedAt: number }
  | { ok: false; error: Exclude<PurchaseOutcome, "purchased"> | "item_sold" }

export type SaleStatus = {
  saleId: number
  now: number
  itemsSold: number
  itemsReserved: number
  checkouts: { accepted: number; rejected: number }
  purchases: { accepted: number; rejected: number }
}

export type Health = {
  /** ok: can sell and the durable store keeps up; degraded: can sell, the durable store lags or is down; down: cannot sell. */
  status: "ok" | "degraded" | "down"
  checks: Record<string, unknown>
}

export type Engine = {
  name: string
  checkout(userId: string, itemId: number): Promise<CheckoutResult>
  purchase(code: string): Promise<PurchaseResult>
  status(): Promise<SaleStatus>
  health(): Promise<Health>
}

/** Thrown when the engine cannot decide (Redis unreachable, state being rebuilt). Answered 503 with Retry-After. */
export class UnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
  ) {
    super(message)
  }
}

/** What the HTTP layer needs from a sale engine. Expected outcomes are values; only "cannot decide now" throws (UnavailableError). */
import type { ErrorCode } from "../errors"

/** The rejections as both engines number them (see lua/checkout.lua and lua/purchase.lua). */
export const checkoutErrors = { [-1]: "unknown_item", [-2]: "sold_out", [-3]: "item_sold", [-4]: "item_reserved", [-5]: "user_limit" } as const
export const purchaseErrors = { [-6]: "code_not_found", [-7]: "code_used" } as const

export type CheckoutResult =
  | { ok: true; repeated: boolean; code: string; saleId: number; itemId: number; expiresAt: number }
  | { ok: false; error: Extract<ErrorCode, "unknown_item" | "sold_out" | "item_sold" | "item_reserved" | "user_limit"> }

export type PurchaseResult =
  | { ok: true; saleId: number; userId: string; itemId: number; purchasedAt: number }
  | { ok: false; error: Extract<ErrorCode, "code_not_found" | "code_used"> }

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

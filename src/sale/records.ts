/** The shapes of what is kept: one record per decision, and a sale as read back from the durable store. */
import type { CheckoutOutcome, PurchaseOutcome } from "./outcomes"

/** One checkout attempt. `eventId` names the journal entry it came from, which orders and deduplicates a sale's attempts (Redis engine; the embedded store numbers its rows itself). */
export type CheckoutRecord = {
  kind: "checkout"
  saleId: number
  eventId?: string
  userId: string
  itemId: number
  outcome: CheckoutOutcome
  /** The hold's code and unit (the repeated one's for a repeat), null when refused. */
  code: string | null
  unit: number | null
  expiresAt: number | null
  at: number
}
/** One purchase attempt; a `purchased` one is also kept in `purchases`, with its unit. */
export type PurchaseRecord = { kind: "purchase"; saleId: number; eventId?: string; code: string; outcome: PurchaseOutcome; userId: string | null; itemId: number | null; unit: number | null; at: number }
export type DecisionRecord = CheckoutRecord | PurchaseRecord

/** A sale as the durable store keeps it, to rebuild live state from. Times are Unix ms. */
export type SaleSnapshot = {
  checkouts: { accepted: number; rejected: number }
  purchases: { accepted: number; rejected: number }
  sold: { itemId: number; unit: number; userId: string; code: string; at: number }[]
  /** Holds still live at the snapshot's time and not yet purchased, by expiry; `at` is the expiry. */
  holds: { itemId: number; unit: number; userId: string; code: string; at: number }[]
}

export const emptySnapshot = (): SaleSnapshot => ({
  checkouts: { accepted: 0, rejected: 0 },
  purchases: { accepted: 0, rejected: 0 },
  sold: [],
  holds: [],
})

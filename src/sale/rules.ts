/**
 * The sale rules, on plain JS state: the reference implementation. The embedded engine runs them as
 * they are (one JS thread, so each decision is atomic); lua/*.lua decide the same in Redis, and the
 * differential test holds the two to identical outcomes, state and kept records.
 */
import { isAccepted, type CheckoutOutcome, type PurchaseOutcome } from "./outcomes"
import type { CheckoutRecord, PurchaseRecord, SaleSnapshot } from "./records"

export type Held = { kind: "h"; itemId: number; userId: string; code: string; expiresAt: number }
export type Sold = { kind: "p"; itemId: number; userId: string; code: string; at: number }

export type SaleState = {
  saleId: number
  /** item id -> its live hold or its sale */
  items: Map<number, Held | Sold>
  /** code -> its live hold or its sale; expired holds are forgotten */
  codes: Map<string, Held | Sold>
  /** user id -> purchases plus live holds */
  users: Map<string, number>
  /** holds in order of expiry; a hold that was bought stays here until its time and is skipped then */
  expiries: Held[]
  expiriesHead: number
  stats: { sold: number; held: number; checkoutsOk: number; checkoutsRejected: number; purchasesOk: number; purchasesRejected: number }
}

export function emptySale(saleId: number): SaleState {
  return {
    saleId,
    items: new Map(),
    codes: new Map(),
    users: new Map(),
    expiries: [],
    expiriesHead: 0,
    stats: { sold: 0, held: 0, checkoutsOk: 0, checkoutsRejected: 0, purchasesOk: 0, purchasesRejected: 0 },
  }
}

function addHold(sale: SaleState, hold: Held): void {
  sale.items.set(hold.itemId, hold)
  sale.codes.set(hold.code, hold)
  sale.users.set(hold.userId, (sale.users.get(hold.userId) ?? 0) + 1)
  // Holds last the same time, so they arrive in expiry order; keep the order if the clock steps back.
  let i = sale.expiries.length
  while (i > sale.expiriesHead && sale.expiries[i - 1]!.expiresAt > hold.expiresAt) i--
  sale.expiries.splice(i, 0, hold)
}

/** A sale's live state from what the durable store kept of it (lua/init_sale.lua does the same in Redis). */
export function restoreSale(saleId: number, snapshot: SaleSnapshot): SaleState {
  const sale = emptySale(saleId)
  for (const s of snapshot.sold) {
    const sold: Sold = { kind: "p", itemId: s.itemId, userId: s.userId, code: s.code, at: s.at }
    sale.items.set(sold.itemId, sold)
    sale.codes.set(sold.code, sold)
    sale.users.set(sold.userId, (sale.users.get(sold.userId) ?? 0) + 1)
  }
  for (const h of snapshot.holds) addHold(sale, { kind: "h", itemId: h.itemId, userId: h.userId, code: h.code, expiresAt: h.at })
  sale.stats = {
    sold: snapshot.sold.length,
    held: snapshot.holds.length,
    checkoutsOk: snapshot.checkouts.accepted,
    checkoutsRejected: snapshot.checkouts.rejected,
    purchasesOk: snapshot.purchases.accepted,
    purchasesRejected: snapshot.purchases.rejected,
  }
  return sale
}

/** Returns every hold expired at `now` to stock (lua/prelude.lua's sweep). */
export function sweep(sale: SaleState, now: number): number {
  let released = 0
  const queue = sale.expiries
  while (sale.expiriesHead < queue.length && queue[sale.expiriesHead]!.expiresAt <= now) {
    const hold = queue[sale.expiriesHead++]!
    if (sale.codes.get(hold.code) !== hold) continue
    sale.codes.delete(hold.code)
    if (sale.items.get(hold.itemId) === hold) sale.items.delete(hold.itemId)
    const count = (sale.users.get(hold.userId) ?? 0) - 1
    if (count <= 0) sale.users.delete(hold.userId)
    else sale.users.set(hold.userId, count)
    released++
  }
  if (sale.expiriesHead > 1024 && sale.expiriesHead * 2 > queue.length) {
    sale.expiries = queue.slice(sale.expiriesHead)
    sale.expiriesHead = 0
  }
  sale.stats.held -= released
  return released
}

export type CheckoutDecision = { outcome: CheckoutOutcome; code: string; expiresAt: number; record: CheckoutRecord }

/** One checkout on the current sale (lua/checkout.lua decides each request of a batch the same way). */
export function checkout(sale: SaleState, now: number, itemId: number, userId: string, newCode: string, limits: { saleItems: number; userLimit: number; holdMs: number }): CheckoutDecision {
  sweep(sale, now)
  let outcome: CheckoutOutcome = "reserved"
  let code = ""
  let expiresAt = 0
  const state = sale.items.get(itemId)
  if (itemId < 1 || itemId > limits.saleItems) outcome = "unknown_item"
  else if (sale.stats.sold >= limits.saleItems) outcome = "sold_out"
  else if (state?.kind === "p") outcome = "item_sold"
  else if (state?.kind === "h") {
    if (state.userId === userId) {
      outcome = "repeated"
      code = state.code
      expiresAt = state.expiresAt
    } else outcome = "item_reserved"
  } else if ((sale.users.get(userId) ?? 0) >= limits.userLimit) outcome = "user_limit"
  else {
    code = newCode
    expiresAt = now + limits.holdMs
    addHold(sale, { kind: "h", itemId, userId, code, expiresAt })
    sale.stats.held++
  }
  if (isAccepted(outcome)) sale.stats.checkoutsOk++
  else sale.stats.checkoutsRejected++
  const record: CheckoutRecord = { kind: "checkout", saleId: sale.saleId, userId, itemId, outcome, code: code || null, expiresAt: expiresAt || null, at: now }
  return { outcome, code, expiresAt, record }
}

export type PurchaseDecision = { outcome: PurchaseOutcome; itemId: number; userId: string; at: number; record: PurchaseRecord }

/** One purchase, once the caller has found the code's sale (lua/purchase.lua decides each code of a batch the same way). */
export function purchase(sale: SaleState, now: number, code: string): PurchaseDecision {
  sweep(sale, now)
  const state = sale.codes.get(code)
  let outcome: PurchaseOutcome = "code_not_found"
  if (state?.kind === "p") outcome = "code_used"
  else if (state?.kind === "h") {
    outcome = "purchased"
    const sold: Sold = { kind: "p", itemId: state.itemId, userId: state.userId, code, at: now }
    sale.items.set(state.itemId, sold)
    sale.codes.set(code, sold)
    sale.stats.held--
    sale.stats.sold++
  }
  if (outcome === "purchased") sale.stats.purchasesOk++
  else sale.stats.purchasesRejected++
  const record: PurchaseRecord = { kind: "purchase", saleId: sale.saleId, code, outcome, userId: state?.userId ?? null, itemId: state?.itemId ?? null, at: now }
  return { outcome, itemId: state?.itemId ?? 0, userId: state?.userId ?? "", at: now, record }
}

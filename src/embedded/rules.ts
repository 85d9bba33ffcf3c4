/**
 * The sale rules of the embedded engine: the same decisions as lua/*.lua, on plain JS state.
 * One JS thread runs them, so each decision is atomic. The differential test holds the two to
 * identical outcomes, state and kept rows.
 */

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

export type CheckoutRow = { kind: "checkout"; saleId: number; userId: string; itemId: number; outcome: string; code: string | null; expiresAt: number | null; at: number }
export type PurchaseRow = { kind: "purchase"; saleId: number; code: string; outcome: string; userId: string | null; itemId: number | null; at: number }
export type Row = CheckoutRow | PurchaseRow

/** Checkout statuses, as the Lua script returns them. */
export const checkoutOutcomes = { 0: "reserved", 1: "repeated", [-1]: "unknown_item", [-2]: "sold_out", [-3]: "item_sold", [-4]: "item_reserved", [-5]: "user_limit" } as const

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

export function addSold(sale: SaleState, sold: Sold): void {
  sale.items.set(sold.itemId, sold)
  sale.codes.set(sold.code, sold)
  sale.users.set(sold.userId, (sale.users.get(sold.userId) ?? 0) + 1)
  sale.stats.sold++
}

export function restoreHold(sale: SaleState, hold: Omit<Held, "kind">): void {
  addHold(sale, { kind: "h", ...hold })
  sale.stats.held++
}

/** Returns every hold expired at `now` to stock (see lua/sweep.lua). */
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

export type CheckoutDecision = { status: keyof typeof checkoutOutcomes; code: string; expiresAt: number; row: CheckoutRow }

/** lua/checkout.lua for one request, on the current sale. */
export function checkout(sale: SaleState, now: number, itemId: number, userId: string, newCode: string, limits: { saleItems: number; userLimit: number; holdMs: number }): CheckoutDecision {
  sweep(sale, now)
  let status: CheckoutDecision["status"] = 0
  let code = ""
  let expiresAt = 0
  const state = sale.items.get(itemId)
  if (itemId < 1 || itemId > limits.saleItems) status = -1
  else if (sale.stats.sold >= limits.saleItems) status = -2
  else if (state?.kind === "p") status = -3
  else if (state?.kind === "h") {
    if (state.userId === userId) {
      status = 1
      code = state.code
      expiresAt = state.expiresAt
    } else status = -4
  } else if ((sale.users.get(userId) ?? 0) >= limits.userLimit) status = -5
  else {
    code = newCode
    expiresAt = now + limits.holdMs
    addHold(sale, { kind: "h", itemId, userId, code, expiresAt })
    sale.stats.held++
  }
  if (status >= 0) sale.stats.checkoutsOk++
  else sale.stats.checkoutsRejected++
  const row: CheckoutRow = { kind: "checkout", saleId: sale.saleId, userId, itemId, outcome: checkoutOutcomes[status], code: code || null, expiresAt: expiresAt || null, at: now }
  return { status, code, expiresAt, row }
}

export type PurchaseDecision = { status: 0 | -6 | -7; itemId: number; userId: string; at: number; row: PurchaseRow }

/** lua/purchase.lua, once the caller has found the code's sale. */
export function purchase(sale: SaleState, now: number, code: string): PurchaseDecision {
  sweep(sale, now)
  const state = sale.codes.get(code)
  let status: PurchaseDecision["status"] = -6
  if (state?.kind === "p") status = -7
  else if (state?.kind === "h") {
    status = 0
    const sold: Sold = { kind: "p", itemId: state.itemId, userId: state.userId, code, at: now }
    sale.items.set(state.itemId, sold)
    sale.codes.set(code, sold)
    sale.stats.held--
    sale.stats.sold++
  }
  if (status === 0) sale.stats.purchasesOk++
  else sale.stats.purchasesRejected++
  const outcome = status === 0 ? "purchased" : status === -7 ? "code_used" : "code_not_found"
  const row: PurchaseRow = { kind: "purchase", saleId: sale.saleId, code, outcome, userId: state?.userId ?? null, itemId: state?.itemId ?? null, at: now }
  return { status, itemId: state?.itemId ?? 0, userId: state?.userId ?? "", at: now, row }
}
